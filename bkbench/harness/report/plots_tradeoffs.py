"""Figures of what a variant trades: accuracy against speed (the Pareto front of the BK-core variants) and time
against sparsity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.formatting import fmt_n, short_dtype, slice_text
from bkbench.harness.report.plotstyle import Figure, Palette, grid, legend_below, plt, save, style, time_axis

# -- Pareto ------------------------------------------------------------------------------------------------------


def plot_pareto(an: Analysis, pal: Palette, out_dir: Path) -> Figure | None:
    p = an.pareto
    pts = p["points"]
    if p["shape"] is None or pts.empty:
        return None
    fig, ax = plt.subplots(figsize=(10.5, 5.8))
    err = np.maximum(pts["rel_err"].to_numpy(dtype=float), 1e-17)
    labels = []
    for (_, r), e in zip(pts.iterrows(), err):
        col = pal(r["impl"])
        ax.plot(r["time_s"], e, marker="o", markersize=8 if r["front"] else 6,
                color=col, markerfacecolor=col if r["front"] else "white", markeredgewidth=1.5, linestyle="none")
        var = f" [{r['variant']}]" if r["variant"] else ""
        labels.append((r["time_s"], e, f"{r['impl']}{var} {short_dtype(r['dtype'])}", col))
    front = pts[pts["front"]].sort_values("time_s")
    if len(front):
        fe = np.maximum(front["rel_err"].to_numpy(dtype=float), 1e-17)
        ax.step(front["time_s"], fe, where="post", color="black", linewidth=1, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.3, y=0.2)
    _place_labels(fig, ax, labels)
    time_axis(ax, "x")
    ax.set_xlabel("time per call (median, s) — lower is better")
    ax.set_ylabel("relative error vs float64 reference — lower is better")
    sh = p["shape"]
    ax.set_title(f"accuracy vs speed: {sh['mode']}, N={fmt_n(sh['n'])}, {slice_text(sh['batch'], sh['d'])}",
                 fontsize=11)
    grid(ax)
    handles = [Line2D([], [], marker="o", color="black", linestyle="none", label="on the Pareto front"),
               Line2D([], [], marker="o", color="black", markerfacecolor="white", linestyle="none",
                      label="dominated")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    fig.tight_layout()
    name = save(fig, out_dir, "pareto.png")
    return Figure(name, "Accuracy–speed Pareto front", "Each point: one implementation / variant / dtype at the "
                  "shape with the most variants measured. Filled points are not beaten on both time and error.")


def _place_labels(fig: plt.Figure, ax: plt.Axes, labels: list[tuple[float, float, str, str]]) -> None:
    """Annotate points without overlapping labels: greedy, in display pixels; a label that cannot sit next to
    its point is moved up/down and joined to it by a thin line."""
    fig.canvas.draw()
    char_w, line_h = 6.3, 13.0  # 7.5 pt text at DPI 110
    placed: list[tuple[float, float, float, float]] = []
    for x, y, _, _ in labels:  # the markers themselves are obstacles too
        px, py = ax.transData.transform((x, y))
        placed.append((px - 5, py - 5, px + 5, py + 5))
    order = sorted(range(len(labels)), key=lambda i: (labels[i][0], labels[i][1]))
    for i in order:
        x, y, text, col = labels[i]
        px, py = ax.transData.transform((x, y))
        w = char_w * len(text)
        best = None
        for k in range(0, 40):
            dy = (k + 1) // 2 * line_h * (1 if k % 2 else -1) if k else 0.0
            box = (px + 7, py + 2 + dy, px + 7 + w, py + 2 + dy + line_h)
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed):
                best = (box, dy)
                break
        if best is None:
            best = ((px + 7, py + 2, px + 7 + w, py + 2 + line_h), 0.0)
        box, dy = best
        placed.append(box)
        ax.annotate(text, (x, y), textcoords="offset pixels", xytext=(7, 2 + dy), fontsize=7.5, color=col,
                    va="bottom", arrowprops=dict(arrowstyle="-", color=col, lw=0.5, alpha=0.6) if dy else None)


# -- sparsity -----------------------------------------------------------------------------------------------------


def plot_sparsity(an: Analysis, pal: Palette, out_dir: Path) -> Figure | None:
    sp = an.sparsity
    if sp is None or sp.empty:
        return None
    modes = sorted(sp["mode"].unique(), key=lambda m: (m != "fwd", m))
    fig, axes = plt.subplots(1, len(modes), figsize=(6.4 * len(modes), 4.6), squeeze=False)
    handles = {}
    for ax, mode in zip(axes[0], modes):
        for (impl, kind, variant, dtype, n, _batch, _d), g in sp[sp["mode"] == mode].groupby(
                ["impl", "kind", "variant", "dtype", "n", "batch", "d"], dropna=False):
            col = pal(impl)
            st = style(kind, dtype)
            lab = f"{impl}{f' [{variant}]' if variant else ''} {short_dtype(dtype)}, N={fmt_n(n)}"
            ax.plot(g["sparsity"], g["time_s"], color=col, **st)
            handles[lab] = Line2D([], [], color=col, label=lab, **st)
        ax.set_yscale("log")
        time_axis(ax)
        ax.set_xlabel("sparsity s (fraction of zero couplings / of masked attention blocks)")
        ax.set_ylabel("time per call (median, s)")
        ax.set_title(mode, fontsize=11)
        grid(ax)
    legend_below(fig, list(handles.values()), list(handles), ncol=3)
    name = save(fig, out_dir, "sparsity.png")
    return Figure(name, "Time vs sparsity", "BK-core sparsity zeroes couplings (the chain splits into independent "
                  "blocks); attention sparsity removes mask blocks (FlexAttention block-sparse).")
