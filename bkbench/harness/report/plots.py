"""The report's figures (matplotlib, Agg backend, PNG files).

Conventions every figure follows: axes labelled with units; log scales where values span decades (sizes,
times, energies, errors); one colour per implementation across every figure of a report
(:class:`~bkbench.harness.report.plotstyle.Palette`), markers by kind (BK-core ●, SSM ■, attention ▲) and line styles by
dtype; legends placed outside the data (below or beside the axes): :mod:`~bkbench.harness.report.plotstyle`.

Each ``plot_*`` function writes one PNG into ``out_dir`` and returns a
:class:`~bkbench.harness.report.plotstyle.Figure`, or None when it has nothing to draw (the page then says so). They
live in modules by family: :mod:`~bkbench.harness.report.plots_scaling` (time vs N, speed-up),
:mod:`~bkbench.harness.report.plots_efficiency` (roofline, user call vs bare kernel, energy),
:mod:`~bkbench.harness.report.plots_tradeoffs` (accuracy vs speed, sparsity),
:mod:`~bkbench.harness.report.plots_tuning` and :mod:`~bkbench.harness.report.plots_comparison`. :func:`make_all`
writes them all.
"""

from __future__ import annotations

from pathlib import Path

from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.plots_comparison import plot_comparison
from bkbench.harness.report.plots_efficiency import plot_energy, plot_roofline, plot_usercall
from bkbench.harness.report.plots_scaling import plot_crossover, plot_scaling
from bkbench.harness.report.plots_tradeoffs import plot_pareto, plot_sparsity
from bkbench.harness.report.plots_tuning import plot_tuning
from bkbench.harness.report.plotstyle import Figure, palette_for


def make_all(an: Analysis, out_dir: Path) -> dict[str, list[Figure]]:
    """Write every figure into ``out_dir``; returns ``{section: [Figure, ...]}`` (empty lists: no data)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pal = palette_for(an)

    def one(f: Figure | None) -> list[Figure]:
        return [f] if f is not None else []

    return {
        "scaling": plot_scaling(an, pal, out_dir),
        "crossover": plot_crossover(an, pal, out_dir),
        "roofline": one(plot_roofline(an, pal, out_dir)),
        "usercall": one(plot_usercall(an, pal, out_dir)),
        "energy": one(plot_energy(an, pal, out_dir)),
        "pareto": one(plot_pareto(an, pal, out_dir)),
        "sparsity": one(plot_sparsity(an, pal, out_dir)),
        "tuning": plot_tuning(an, pal, out_dir),
        "comparison": one(plot_comparison(an, pal, out_dir)),
    }
