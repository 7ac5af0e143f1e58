"""The HTML report: ``bkbench report --db PATH --out DIR`` (see docs/reports.md).

Modules, each importing only those listed before it:

- basics: :mod:`~bkbench.harness.report.fields` (decoding stored row fields), :mod:`~bkbench.harness.report.formatting`
  (numbers, sizes, times and shapes as text), :mod:`~bkbench.harness.report.stats` (fits, quantiles, tests);
- loading: :mod:`~bkbench.harness.report.usercall` (user call vs bare kernel columns),
  :mod:`~bkbench.harness.report.data` (read-only loading of results databases through :class:`bkbench.store.Store`);
- analysis: :mod:`~bkbench.harness.report.series`, :mod:`~bkbench.harness.report.fits` (fits and crossovers),
  :mod:`~bkbench.harness.report.crossover_gaps`, :mod:`~bkbench.harness.report.tables`,
  :mod:`~bkbench.harness.report.autotuning`, :mod:`~bkbench.harness.report.comparison`, and
  :mod:`~bkbench.harness.report.analysis` (runs them all: everything the page states);
- figures: :mod:`~bkbench.harness.report.plotstyle` (shared look), ``plots_*`` by family,
  :mod:`~bkbench.harness.report.plots` (all figures);
- page: :mod:`~bkbench.harness.report.sections` (formatted section context), :mod:`~bkbench.harness.report.render` (the
  page); :mod:`~bkbench.harness.report.browser` checks a rendered page in headless Chromium (it imports nothing of the
  package).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bkbench.harness.report.analysis import Analysis, analyze
from bkbench.harness.report.data import load, load_pair
from bkbench.harness.report.render import render


def build_report(db_paths: list[str | Path], out_dir: str | Path, *, runs: list[str] | None = None,
                 compare: tuple[str, str] | None = None, tuning_files: list[str | Path] | None = None,
                 fit_min_n: float | None = None, fit_max_n: float | None = None, reps: int = 1000,
                 embed: bool = False, title: str = "bkbench report", use_registry: bool = True) -> Path:
    """Load ``db_paths``, analyse and render; returns the path of ``index.html`` in ``out_dir``.

    runs: run names to include (all when None); compare: (RUN_A, RUN_B) for the comparison section;
    tuning_files: JSON files written by the autotuner (see docs/reports.md for what is read from them); the
    tables shipped with ``triton_fused`` (``kernels/bk/data/triton_fused_*.json``) are read for the GPUs the loaded
    runs were measured on.
    """
    if reps < 100:
        raise ValueError(f"reps: use at least 100 bootstrap resamples, got {reps}")
    loaded = load(list(db_paths), runs)
    pair = load_pair(list(db_paths), compare[0], compare[1]) if compare else None
    docs: list[tuple[str, Any]] = []
    platforms = set(loaded.df["platform"].astype(str)) if len(loaded.df) else set()
    docs += packaged_tuning_docs(platforms)
    for f in tuning_files or []:
        p = Path(f)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"tuning: cannot read {p} as JSON ({exc}); pass a tuning JSON file") from exc
        docs.append((p.name, doc))
    an = analyze(loaded, fit_min_n=fit_min_n, fit_max_n=fit_max_n, reps=reps, tuning_docs=docs, compare=pair,
                 use_registry=use_registry)
    return render(an, out_dir, title=title, embed=embed, sources=[str(p) for p in db_paths])


__all__ = ["Analysis", "analyze", "build_report", "load", "render"]


def packaged_tuning_docs(platforms: set[str]) -> list[tuple[str, Any]]:
    """``triton_fused``'s packaged tables of the GPUs in ``platforms``, as tuning documents whose entries are keyed
    ``"GPU|dtype|coupling|bucket"`` (the form the report's tuning section reads)."""
    try:
        from bkbench.kernels.bk._triton_fused_tables import packaged_tables
    except ImportError:  # pragma: no cover - the kernels package is part of the install
        return []
    return [(name, {f"{gpu.name}|{key}": entry for key, entry in entries.items()})
            for gpu, name, entries in packaged_tables() if gpu.name in platforms]
