"""The figure of the two-run comparison: per case, the time ratio of run B to run A with its interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.plotstyle import KIND_MARKER, Figure, Palette, plt, ratio_axis, save
from bkbench.harness.report.series import KIND_ORDER


def plot_comparison(an: Analysis, pal: Palette, out_dir: Path) -> Figure | None:
    if an.comparison is None:
        return None
    c = an.comparison["cases"]
    if c is None or c.empty:
        return None
    groups = sorted(c.groupby(["kind", "impl", "mode"]).groups, key=lambda k: (KIND_ORDER.get(k[0], 9), k[1], k[2]))
    fig, ax = plt.subplots(figsize=(10.5, max(2.5, 0.36 * len(groups) + 1.4)))
    rng = np.random.default_rng(0)
    for row, (kind, impl, mode) in enumerate(groups):
        g = c[(c["kind"] == kind) & (c["impl"] == impl) & (c["mode"] == mode)]
        col = pal(impl)
        y = row + rng.uniform(-0.22, 0.22, len(g))
        x = g["ratio"].to_numpy(dtype=float)
        lo = np.clip(x - g["ratio_lo"].to_numpy(dtype=float), 0, None)
        hi = np.clip(g["ratio_hi"].to_numpy(dtype=float) - x, 0, None)
        sig = (g["verdict"] != "no significant change").to_numpy()
        ax.errorbar(x, y, xerr=np.nan_to_num(np.vstack([lo, hi])), fmt="none", ecolor=col, alpha=0.45)
        mk = KIND_MARKER.get(kind, "D")
        ax.plot(x[sig], y[sig], linestyle="none", marker=mk, color=col, markersize=7)
        ax.plot(x[~sig], y[~sig], linestyle="none", marker=mk, color=col, markersize=6, markerfacecolor="white")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(groups)), [f"{impl} ({mode})" for _, impl, mode in groups])
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.invert_yaxis()
    ax.set_xscale("log")
    lo_all = float(np.nanmin(c[["ratio", "ratio_lo"]].to_numpy(dtype=float)))
    hi_all = float(np.nanmax(c[["ratio", "ratio_hi"]].to_numpy(dtype=float)))
    pad = max(1.05, (hi_all / lo_all) ** 0.08) if lo_all > 0 else 1.1
    ax.set_xlim(min(lo_all, 1.0) / pad, max(hi_all, 1.0) * pad)
    ratio_axis(ax, "x")
    a, b = (r["run"] for r in an.compare_runs)
    ax.set_xlabel(f"time ratio: run {b} / run {a} per case (below 1×: run {b} faster), 95 % bootstrap interval")
    ax.grid(True, axis="x", alpha=0.35)
    handles = [Line2D([], [], color="grey", marker="o", linestyle="none",
                      label="significant (q < 0.05, CI excludes 1)"),
               Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="none",
                      label="no significant change")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    fig.tight_layout()
    name = save(fig, out_dir, "comparison.png")
    return Figure(name, f"Run {b} vs run {a}", "One point per case (all sizes, dtypes, variants of the row's "
                  "implementation and mode, jittered vertically): ratio of medians with its 95 % bootstrap interval.")
