"""What the report computes from the results: scaling series and power-law fits, crossovers with
uncertainty, memory limits, roofline, energy, the accuracy–speed Pareto front, sparsity, autotuning, a
two-run comparison, and the list of every case that did not produce a speed.

Inputs are the normalised frame of :mod:`bkbench.harness.report.data` (one row per case). Only rows with status
``ok`` contribute a time; nothing here invents or fills in a measurement. Every function returns plain
pandas DataFrames / dataclasses that :mod:`bkbench.harness.report.plots` and :mod:`bkbench.harness.report.render`
display.

The computations live in modules of their own: :mod:`~bkbench.harness.report.series` (the scaling series and the
definitions of shape, series and primary series), :mod:`~bkbench.harness.report.fits` (power-law fits and crossovers,
with their definitions), :mod:`~bkbench.harness.report.crossover_gaps` (crossover cells of declined or failed
baselines), :mod:`~bkbench.harness.report.tables` (memory limits, headline, roofline, energy, Pareto front, sparsity,
failures), :mod:`~bkbench.harness.report.autotuning` and :mod:`~bkbench.harness.report.comparison`. This module runs
them all (:func:`analyze`) and holds the result (:class:`Analysis`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bkbench.harness.report.autotuning import tuning, tuning_from_json
from bkbench.harness.report.comparison import compare_runs
from bkbench.harness.report.crossover_gaps import with_gaps
from bkbench.harness.report.data import Loaded
from bkbench.harness.report.fits import (
    DEFAULT_REPS,
    Crossover,
    crossover,
    crossover_table,
    crossovers,
    fit_range,
    fit_rule_text,
    fit_series,
)
from bkbench.harness.report.series import Series, assign_shapes, build_series
from bkbench.harness.report.tables import (
    energy_table,
    failures,
    headline,
    main_slices,
    oom_table,
    pareto,
    pareto_front,
    roofline_table,
    sparsity_table,
)

# imported from here by code outside the package (the tests)
__all__ = ["Analysis", "Series", "analyze", "assign_shapes", "compare_runs", "crossover", "fit_range", "oom_table",
           "pareto_front", "tuning_from_json"]


# -- implementation facts (from the registry when it can be imported) -----------------------------------------


def implementation_facts() -> dict[str, dict[str, Any]]:
    """``{name: {"exact", "kind", "description"}}`` from the default registry; ``{}`` when unavailable."""
    try:
        from bkbench.registry import default_registry

        return {r.name: {"exact": r.exact, "kind": r.kind, "description": r.description,
                         "defaults": dict(r.defaults)} for r in default_registry().implementations(None)}
    except Exception:  # the report must render without the kernels package (e.g. on a laptop)
        return {}


# -- everything ---------------------------------------------------------------------------------------------------


@dataclass
class Analysis:
    """All computed sections of one report (see the module docstring)."""

    loaded: Loaded
    series: list[Series]
    fits: pd.DataFrame
    fit_rule: str
    slices: list[tuple]
    crossovers: list[Crossover]
    crossover_df: pd.DataFrame
    oom: pd.DataFrame
    headline: list[dict[str, Any]]
    roofline: pd.DataFrame
    energy: pd.DataFrame
    energy_missing: pd.DataFrame
    pareto: dict[str, Any]
    sparsity: pd.DataFrame
    tuning: dict[str, pd.DataFrame]
    failures: pd.DataFrame
    status_counts: pd.DataFrame
    comparison: dict[str, Any] | None = None
    compare_runs: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    reps: int = DEFAULT_REPS


def analyze(loaded: Loaded, *, fit_min_n: float | None = None, fit_max_n: float | None = None,
            reps: int = DEFAULT_REPS, tuning_docs: list[tuple[str, Any]] | None = None,
            compare: tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]] | None = None,
            use_registry: bool = True) -> Analysis:
    """Run every analysis on ``loaded``; ``compare`` = (rows of run A, rows of run B, the two run records)."""
    df = loaded.df
    facts = implementation_facts() if use_registry else {}
    series = build_series(df, facts)
    fits = fit_series(series, fit_min_n, fit_max_n)
    oom = oom_table(df)
    cs = crossovers(series, reps=reps, oom=oom)
    slices = main_slices(series)
    fail, counts = failures(df)
    energy, energy_missing = energy_table(df)
    comp = compare_runs(compare[0], compare[1]) if compare is not None else None
    comp_runs = compare[2] if compare is not None else []
    return Analysis(
        loaded=loaded, series=series, fits=fits, fit_rule=fit_rule_text(fit_min_n, fit_max_n), slices=slices,
        crossovers=cs, crossover_df=with_gaps(crossover_table(cs), df, series), oom=oom,
        headline=headline(series, cs, slices),
        roofline=roofline_table(df), energy=energy, energy_missing=energy_missing, pareto=pareto(df),
        sparsity=sparsity_table(df), tuning=tuning(df, tuning_docs, facts), failures=fail, status_counts=counts,
        comparison=comp, compare_runs=comp_runs, facts=facts, reps=reps,
    )
