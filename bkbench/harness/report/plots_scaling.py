"""Figures of time against N: the scaling curves with their fitted power laws per main slice, and the speed-up
of the headline BK-core series over each baseline with N* marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.formatting import shape_text
from bkbench.harness.report.plotstyle import (
    Figure,
    Palette,
    alpha_text,
    grid,
    plt,
    ratio_axis,
    save,
    size_axis,
    style,
    time_axis,
)
from bkbench.harness.report.series import KIND_ORDER, Series


def plot_scaling(an: Analysis, pal: Palette, out_dir: Path) -> list[Figure]:
    """Time vs N (log-log) per main slice; one panel per mode; fitted power laws drawn over their range."""
    figs = []
    oom = an.oom
    for idx, sl in enumerate(an.slices):
        members = [s for s in an.series if s.primary and s.slice == sl and s.ns.size >= 2]
        modes = sorted({s.mode for s in members}, key=lambda m: (m != "fwd", m))
        if not modes:
            continue
        fig, axes = plt.subplots(1, len(modes), figsize=(6.6 * len(modes), 4.6), squeeze=False)
        legends = []
        for ax, mode in zip(axes[0], modes):
            ms = sorted((s for s in members if s.mode == mode), key=lambda s: (KIND_ORDER.get(s.kind, 9), s.label))
            handles = []
            for s in ms:
                col = pal(s.impl)
                st = style(s.kind, s.dtype)
                ax.plot(s.ns, s.t, color=col, linestyle=st["linestyle"], linewidth=1.0, alpha=0.55)
                ax.plot(s.ns, s.t, color=col, marker=st["marker"], linestyle="none", markersize=5)
                if s.fit is not None:
                    xs = np.geomspace(s.fit.n_min, s.fit.n_max, 50)
                    ax.plot(xs, s.fit.predict(xs), color=col, linewidth=4.0, alpha=0.25, solid_capstyle="round")
                if len(oom):
                    hit = oom[(oom["impl"] == s.impl) & (oom["mode"] == mode) & (oom["dtype"] == s.dtype)
                              & (oom["platform"] == s.platform)]
                    if len(hit):
                        n_oom = float(hit["first_oom_n"].min())
                        ax.plot([n_oom], [s.t[-1]], marker="X", color=col, markersize=10, linestyle="none",
                                markeredgecolor="black")
                        ax.annotate("OOM", (n_oom, s.t[-1]), textcoords="offset points", xytext=(6, -3), fontsize=8)
                handles.append(Line2D([], [], color=col, marker=st["marker"], linestyle=st["linestyle"],
                                      label=f"{s.label}{alpha_text(s)}"))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            size_axis(ax, np.concatenate([s.ns for s in ms]))
            time_axis(ax)
            ax.set_xlabel("sequence length N (tokens = chain length)")
            ax.set_ylabel("time per call (median, s)")
            ax.set_title(f"{mode}", fontsize=11)
            grid(ax)
            legends.append((ax, handles))
        fig.suptitle(f"Time vs N — {sl[0]}, {shape_text(sl[1])}", fontsize=12)
        fig.tight_layout()  # before the legends: they extend the canvas below instead of squeezing the axes
        for ax, handles in legends:
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False,
                      fontsize=8.5, title="series, fitted exponent α [95 % CI]", title_fontsize=8.5)
        name = save(fig, out_dir, f"scaling_{idx}.png")
        figs.append(Figure(name, f"Time vs N — {shape_text(sl[1])}",
                           "Markers: measured medians (status ok only); thick translucent lines: fitted power laws "
                           "t = c·N^α over each series' fit range (α with its 95 % CI in the legends); ✕ OOM: first "
                           "size that ran out of memory. The fits table lists every series."))
    return figs


def plot_crossover(an: Analysis, pal: Palette, out_dir: Path) -> list[Figure]:
    """Speed-up of the headline BK-core series over each baseline vs N, with N* marked."""
    figs = []
    for idx, h in enumerate(an.headline):
        rows = [r for r in h["rows"] if r["crossover"].common.size >= 2]
        if h["bk"] is None:
            continue
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(10, 4.4))
        bk: Series = h["bk"]
        handles = []
        for r in rows:
            c = r["crossover"]
            base = c.base
            ib = np.searchsorted(bk.ns, c.common)
            ia = np.searchsorted(base.ns, c.common)
            ratio = base.t[ia] / bk.t[ib]
            col = pal(base.impl)
            st = style(base.kind, base.dtype)
            (ln,) = ax.plot(c.common, ratio, color=col, marker=st["marker"], linestyle=st["linestyle"],
                            label=f"vs {base.label}: N* {c.text()}")
            handles.append(ln)
            if c.state == "cross":
                ax.axvspan(max(c.lo, c.common[0]) if np.isfinite(c.lo) else c.common[0],
                           min(c.hi, c.common[-1]) if np.isfinite(c.hi) else c.common[-1], color=col, alpha=0.12)
                ax.axvline(c.n_star, color=col, linewidth=1, linestyle=":")
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        size_axis(ax, np.concatenate([r["crossover"].common for r in rows]))
        ax.set_xlabel("sequence length N")
        ax.set_ylabel("speed-up: baseline time / BK time (×)")
        ratio_axis(ax)
        ax.set_title(f"{h['mode']}: {bk.label} against each baseline (above 1: the BK-core is faster)", fontsize=11)
        grid(ax)
        fig.tight_layout()
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8.5,
                  title="baseline: measured N* (95 % bootstrap interval)", title_fontsize=8.5)
        name = save(fig, out_dir, f"crossover_{idx}.png")
        figs.append(Figure(name, f"Speed-up vs N ({h['mode']}, {shape_text(h['shape'])})",
                           "Dotted vertical lines: measured N*; shaded: its 95 % bootstrap interval."))
    return figs
