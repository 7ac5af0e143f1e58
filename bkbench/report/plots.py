"""The report's figures (matplotlib, Agg backend, PNG files).

Conventions every figure follows: axes labelled with units; log scales where values span decades (sizes,
times, energies, errors); one colour per implementation across every figure of a report (:class:`Palette`),
markers by kind (BK-core ●, SSM ■, attention ▲) and line styles by dtype; legends placed outside the data
(below or beside the axes). Each ``plot_*`` function writes one PNG into ``out_dir`` and returns a
:class:`Figure`, or None when it has nothing to draw (the page then says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from bkbench.report import usercall  # noqa: E402
from bkbench.report.analysis import (  # noqa: E402
    KIND_ORDER,
    Analysis,
    Series,
    fmt_n,
    fmt_time,
    shape_text,
    short_dtype,
)

DPI = 110
KIND_MARKER = {"bk": "o", "ssm": "s", "attention": "^"}
DTYPE_STYLE = {"float32": "-", "fp32": "-", "bfloat16": "--", "bf16": "--", "float16": ":", "fp16": ":",
               "float64": "-.", "fp64": "-."}
COLOURS = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#393b79", "#ad494a", "#637939", "#7b4173", "#b5cf6b", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
]


@dataclass(frozen=True)
class Figure:
    """A written figure: ``file`` is relative to the report directory."""

    file: str
    title: str
    caption: str


class Palette:
    """One colour per implementation name, assigned in (kind, name) order so BK-core kernels come first."""

    def __init__(self, impls: list[tuple[str, str]]) -> None:
        ordered = sorted(set(impls), key=lambda p: (KIND_ORDER.get(p[1], 9), p[0]))
        self.colour: dict[str, str] = {}
        for name, _ in ordered:
            if name not in self.colour:
                self.colour[name] = COLOURS[len(self.colour) % len(COLOURS)]

    def __call__(self, impl: str) -> str:
        return self.colour.get(impl, "#444444")


def palette_for(an: Analysis) -> Palette:
    df = an.loaded.df
    pairs = list(zip(df["impl"], df["kind"]))
    if an.comparison is not None and len(an.comparison["cases"]):
        pairs += list(zip(an.comparison["cases"]["impl"], an.comparison["cases"]["kind"]))
    return Palette(pairs)


# -- axis helpers ---------------------------------------------------------------------------------------------


def _time_axis(ax: plt.Axes, axis: str = "y") -> None:
    """Log time axis labelled "10 µs", "1 ms"; 1-2-5 ticks when the data span less than two decades.
    Call after plotting (it reads the axis limits)."""
    fmt = FuncFormatter(lambda v, _: fmt_time(v))
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    span = math.log10(hi / lo) if lo > 0 and hi > lo else 3.0
    subs = (1.0, 2.0, 5.0) if span < 2.0 else (1.0,)
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(fmt)
    target.set_minor_formatter(NullFormatter())


def _size_axis(ax: plt.Axes, values: np.ndarray | None = None) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_n(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if values is not None and len(values):
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        if lo > 0 and hi / lo > 2**14:  # too many octaves for a label on each: label every other one
            ticks = 2.0 ** np.arange(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1, 2)
            ax.set_xticks(ticks)


def _ratio_axis(ax: plt.Axes, axis: str = "y") -> None:
    """Log ratio axis with readable ticks ("0.8×", "1×", "2×", "10×"); call after plotting."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    nice = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 5, 10, 20, 50, 100, 200, 500,
            1000]
    ticks = [t for t in nice if lo <= t <= hi]
    if len(ticks) > 9:
        ticks = [t for t in ticks if t in (0.01, 0.1, 0.5, 1.0, 2, 10, 100, 1000)]
    target.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    target.set_minor_formatter(NullFormatter())


def _grid(ax: plt.Axes) -> None:
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _save(fig: plt.Figure, out_dir: Path, name: str) -> str:
    path = out_dir / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return name


def _style(s_kind: str, dtype: str) -> dict:
    return {"marker": KIND_MARKER.get(s_kind, "D"), "linestyle": DTYPE_STYLE.get(dtype, "-")}


def _legend_below(fig: plt.Figure, handles: list, labels: list, ncol: int = 3) -> None:
    """A figure legend under the axes; lays the axes out first so the legend extends the canvas."""
    fig.tight_layout()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False,
                   fontsize=9)


def _slice_text(batch: float, d: float) -> str:
    parts = []
    if batch is not None and np.isfinite(batch) and batch >= 0:
        parts.append(f"B={int(batch)}")
    if d is not None and np.isfinite(d) and d >= 0:
        parts.append(f"d={int(d)}")
    return ", ".join(parts) or "all shapes"


def _alpha_text(s: Series) -> str:
    f = s.fit
    if f is None:
        return ""
    if f.n_points > 2:
        return f"  α={f.alpha:.2f} [{f.alpha_lo:.2f}, {f.alpha_hi:.2f}]"
    return f"  α={f.alpha:.2f} (2 points, no CI)"


# -- scaling ------------------------------------------------------------------------------------------------------


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
                st = _style(s.kind, s.dtype)
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
                                      label=f"{s.label}{_alpha_text(s)}"))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            _size_axis(ax, np.concatenate([s.ns for s in ms]))
            _time_axis(ax)
            ax.set_xlabel("sequence length N (tokens = chain length)")
            ax.set_ylabel("time per call (median, s)")
            ax.set_title(f"{mode}", fontsize=11)
            _grid(ax)
            legends.append((ax, handles))
        fig.suptitle(f"Time vs N — {sl[0]}, {shape_text(sl[1])}", fontsize=12)
        fig.tight_layout()  # before the legends: they extend the canvas below instead of squeezing the axes
        for ax, handles in legends:
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False,
                      fontsize=8.5, title="series, fitted exponent α [95 % CI]", title_fontsize=8.5)
        name = _save(fig, out_dir, f"scaling_{idx}.png")
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
            st = _style(base.kind, base.dtype)
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
        _size_axis(ax, np.concatenate([r["crossover"].common for r in rows]))
        ax.set_xlabel("sequence length N")
        ax.set_ylabel("speed-up: baseline time / BK time (×)")
        _ratio_axis(ax)
        ax.set_title(f"{h['mode']}: {bk.label} against each baseline (above 1: the BK-core is faster)", fontsize=11)
        _grid(ax)
        fig.tight_layout()
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8.5,
                  title="baseline: measured N* (95 % bootstrap interval)", title_fontsize=8.5)
        name = _save(fig, out_dir, f"crossover_{idx}.png")
        figs.append(Figure(name, f"Speed-up vs N ({h['mode']}, {shape_text(h['shape'])})",
                           "Dotted vertical lines: measured N*; shaded: its 95 % bootstrap interval."))
    return figs


# -- roofline -----------------------------------------------------------------------------------------------------


def plot_roofline(an: Analysis, pal: Palette, out_dir: Path) -> Figure | None:
    df = an.loaded.df
    prim = {(s.impl, s.variant, s.dtype) for s in an.series if s.primary and s.kind == "bk" and s.mode == "fwd"}
    ok = df[(df["kind"] == "bk") & df["gbps_eff"].notna() & (df["sparsity"] == 0) & (df["impl"] != "auto")
            & (df["mode"] == "fwd") & df["tuning_config"].isna()]
    ok = ok[[(i, v, d) in prim for i, v, d in zip(ok["impl"], ok["variant"], ok["dtype"])]]
    if ok.empty:
        return None
    has_pct = ok["roof_pct"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_pct else 1, figsize=(13 if has_pct else 7, 4.8), squeeze=False)
    ax1 = axes[0][0]
    handles = {}
    for (impl, variant, dtype, _platform), g in ok.groupby(["impl", "variant", "dtype", "platform"]):
        g = g.groupby("elements", as_index=False)[["gbps_eff", "roof_pct"]].median().sort_values("elements")
        col = pal(impl)
        ls = DTYPE_STYLE.get(dtype, "-")
        lab = f"{impl}{f' [{variant}]' if variant else ''} {short_dtype(dtype)}"
        ax1.plot(g["elements"], g["gbps_eff"], color=col, marker="o", linestyle=ls, markersize=4)
        if has_pct:
            axes[0][1].plot(g["elements"], g["roof_pct"], color=col, marker="o", linestyle=ls, markersize=4)
        handles[lab] = Line2D([], [], color=col, marker="o", linestyle=ls, label=lab)
    for bw in sorted(set(ok["copy_bandwidth_gbs"].dropna())):
        ax1.axhline(bw, color="black", linestyle="--", linewidth=1)
        ax1.annotate(f"measured copy bandwidth {bw:.0f} GB/s", (ok["elements"].min(), bw), textcoords="offset points",
                     xytext=(2, 4), fontsize=8)
    for ax in axes[0]:
        ax.set_xscale("log", base=2)
        _size_axis(ax, ok["elements"].to_numpy())
        ax.set_xlabel("problem size B·d·N (elements)")
        _grid(ax)
    ax1.set_yscale("log")
    ax1.set_ylabel("achieved bandwidth (ideal bytes / time, GB/s)")
    ax1.set_title("achieved GB/s (forward)", fontsize=11)
    if has_pct:
        ax2 = axes[0][1]
        ax2.axhline(100, color="black", linestyle="--", linewidth=1)
        ax2.set_ylabel("% of the run's measured copy bandwidth")
        ax2.set_ylim(bottom=0)
        ax2.set_title("% of copy bandwidth (forward)", fontsize=11)
    _legend_below(fig, list(handles.values()), list(handles), ncol=3)
    name = _save(fig, out_dir, "roofline.png")
    return Figure(name, "Roofline", "Ideal bytes come from each implementation's analytic bytes model (stored by "
                  "the runner; a BK-core row counts what it timed: the user call bk_core's a, b, c, or the bare "
                  "kernel's a, k); the ceiling is the device copy bandwidth measured in the same run. One line per "
                  "implementation and dtype (its most-measured options); the table lists every variant.")


# -- energy -------------------------------------------------------------------------------------------------------


def plot_energy(an: Analysis, pal: Palette, out_dir: Path) -> Figure | None:
    e = an.energy
    if e is None or e.empty:
        return None
    e = e[e["sparsity"] == 0]
    if e.empty:
        return None
    # one row of panels per (batch, width): the per-element and per-token figures of different shapes are not
    # one series (a line through them would join unrelated cases)
    shapes = sorted({(int(b), int(d)) for b, d in zip(e["batch"], e["d"])})
    fig, axes = plt.subplots(len(shapes), 2, figsize=(13, 1.0 + 3.8 * len(shapes)), squeeze=False)
    handles = {}
    for row, (bb, dd) in enumerate(shapes):
        es = e[(e["batch"] == bb) & (e["d"] == dd)]
        for (impl, kind, variant, dtype, mode), g in es.groupby(["impl", "kind", "variant", "dtype", "mode"]):
            g = g.sort_values("n")
            col = pal(impl)
            mk = KIND_MARKER.get(kind, "D")
            lab = f"{impl}{f' [{variant}]' if variant else ''} {short_dtype(dtype)} {mode}"
            for ax, tot, dyn in ((axes[row][0], "j_per_element", "dyn_j_per_element"),
                                 (axes[row][1], "j_per_token", "dyn_j_per_token")):
                ax.plot(g["n"], g[tot], color=col, marker=mk, linestyle="-" if mode == "fwd" else "-.")
                if g[dyn].notna().any():
                    ax.plot(g["n"], g[dyn], color=col, marker=mk, linestyle=":", fillstyle="none")
                cap = g[g["capped"]]
                if len(cap):
                    ax.plot(cap["n"], cap[tot], linestyle="none", marker="o", markersize=13, markerfacecolor="none",
                            markeredgecolor="red", markeredgewidth=2)
            handles[lab] = Line2D([], [], color=col, marker=mk, linestyle="-" if mode == "fwd" else "-.", label=lab)
        for ax, what in ((axes[row][0], "energy per element (J)"), (axes[row][1], "energy per token (J)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            _size_axis(ax, e["n"].to_numpy())
            ax.set_xlabel("sequence length N")
            ax.set_ylabel(what)
            _grid(ax)
        axes[row][0].set_title(f"B = {bb}, d = {dd}: J / element (one chain position; B·d·N per call)", fontsize=10)
        axes[row][1].set_title(f"B = {bb}, d = {dd}: J / token (B·N tokens per call)", fontsize=10)
    handles["dotted, hollow: dynamic (idle-subtracted)"] = Line2D([], [], color="grey", linestyle=":", marker="o",
                                                                  fillstyle="none")
    if e["capped"].any():
        handles["red ring: power-capped trial"] = Line2D([], [], linestyle="none", marker="o", markersize=10,
                                                         markerfacecolor="none", markeredgecolor="red")
    _legend_below(fig, list(handles.values()), list(handles), ncol=3)
    name = _save(fig, out_dir, "energy.png")
    return Figure(name, "Energy", "Solid: total energy per call divided by elements/tokens; dotted: dynamic "
                  "(idle power subtracted). Only cases with a measured energy (NVML counter) are drawn.")


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
    _time_axis(ax, "x")
    ax.set_xlabel("time per call (median, s) — lower is better")
    ax.set_ylabel("relative error vs float64 reference — lower is better")
    sh = p["shape"]
    ax.set_title(f"accuracy vs speed: {sh['mode']}, N={fmt_n(sh['n'])}, {_slice_text(sh['batch'], sh['d'])}",
                 fontsize=11)
    _grid(ax)
    handles = [Line2D([], [], marker="o", color="black", linestyle="none", label="on the Pareto front"),
               Line2D([], [], marker="o", color="black", markerfacecolor="white", linestyle="none",
                      label="dominated")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    fig.tight_layout()
    name = _save(fig, out_dir, "pareto.png")
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
            st = _style(kind, dtype)
            lab = f"{impl}{f' [{variant}]' if variant else ''} {short_dtype(dtype)}, N={fmt_n(n)}"
            ax.plot(g["sparsity"], g["time_s"], color=col, **st)
            handles[lab] = Line2D([], [], color=col, label=lab, **st)
        ax.set_yscale("log")
        _time_axis(ax)
        ax.set_xlabel("sparsity s (fraction of zero couplings / of masked attention blocks)")
        ax.set_ylabel("time per call (median, s)")
        ax.set_title(mode, fontsize=11)
        _grid(ax)
    _legend_below(fig, list(handles.values()), list(handles), ncol=3)
    name = _save(fig, out_dir, "sparsity.png")
    return Figure(name, "Time vs sparsity", "BK-core sparsity zeroes couplings (the chain splits into independent "
                  "blocks); attention sparsity removes mask blocks (FlexAttention block-sparse).")


# -- autotuning ---------------------------------------------------------------------------------------------------


def plot_tuning(an: Analysis, pal: Palette, out_dir: Path) -> list[Figure]:
    figs = []
    tu = an.tuning
    sp = tu["speedup_store"]
    if sp is not None and len(sp):
        fig, ax = plt.subplots(figsize=(9, 3.8))
        for (impl, dtype, mode, batch), g in sp.groupby(["impl", "dtype", "mode", "batch"], dropna=False):
            g = g.sort_values("n")
            ax.plot(g["n"], g["speedup"], marker="o", color=pal(impl),
                    label=f"{impl} {short_dtype(dtype)} {mode}, B={batch:g}")
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_xscale("log", base=2)
        _size_axis(ax, sp["n"].to_numpy())
        ax.set_xlabel("sequence length N")
        ax.set_ylabel("tuned speed-up (default time / tuned time, ×)")
        _grid(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
        fig.tight_layout()
        figs.append(Figure(_save(fig, out_dir, "tuning_speedup.png"), "Tuned vs default configuration",
                           "Same case timed with the default and the tuned kernel configuration."))
    maps = []
    ds = tu["dispatch_store"]
    if ds is not None and len(ds):
        maps.append(("impl=\"auto\" dispatched to", ds))
    mb = tu["measured_best"]
    if mb is not None and len(mb) and mb["batch"].nunique() >= 1:
        maps.append(("fastest measured exact implementation", mb))
    if maps:
        fig, axes = plt.subplots(1, len(maps), figsize=(6.6 * len(maps), 3.8), squeeze=False)
        for ax, (title, m) in zip(axes[0], maps):
            m = m[m["mode"] == "fwd"] if (m["mode"] == "fwd").any() else m
            dtype = m["dtype"].value_counts().index[0] if m["dtype"].notna().any() else ""
            m = m[m["dtype"] == dtype] if dtype else m
            title = f"{title}, {short_dtype(str(dtype))}" if dtype else title
            ns = sorted(m["n"].dropna().unique())
            bs = sorted(m["batch"].dropna().unique())
            for _, r in m.iterrows():
                if pd.isna(r["n"]) or pd.isna(r["batch"]):
                    continue
                x, y = ns.index(r["n"]), bs.index(r["batch"])
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, color=pal(r["impl"]), alpha=0.75))
                ax.text(x, y, str(r["impl"]).replace("_", "_\n", 1), ha="center", va="center", fontsize=7,
                        color="white", fontweight="bold")
            ax.set_xlim(-0.5, len(ns) - 0.5)
            ax.set_ylim(-0.5, len(bs) - 0.5)
            ax.set_xticks(range(len(ns)), [fmt_n(n) for n in ns])
            ax.set_yticks(range(len(bs)), [f"{b:g}" for b in bs])
            ax.set_xlabel("sequence length N")
            ax.set_ylabel("batch B")
            ax.set_title(f"{title} (forward)", fontsize=10)
        fig.tight_layout()
        figs.append(Figure(_save(fig, out_dir, "dispatch_map.png"), "Dispatch map over (N, batch)",
                           "Left (when present): the implementation impl=\"auto\" chose, as recorded by the runner; "
                           "right: the fastest exact implementation measured at each (N, B)."))
    return figs


# -- comparison ---------------------------------------------------------------------------------------------------


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
    _ratio_axis(ax, "x")
    a, b = (r["run"] for r in an.compare_runs)
    ax.set_xlabel(f"time ratio: run {b} / run {a} per case (below 1×: run {b} faster), 95 % bootstrap interval")
    ax.grid(True, axis="x", alpha=0.35)
    handles = [Line2D([], [], color="grey", marker="o", linestyle="none",
                      label="significant (q < 0.05, CI excludes 1)"),
               Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="none",
                      label="no significant change")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    fig.tight_layout()
    name = _save(fig, out_dir, "comparison.png")
    return Figure(name, f"Run {b} vs run {a}", "One point per case (all sizes, dtypes, variants of the row's "
                  "implementation and mode, jittered vertically): ratio of medians with its 95 % bootstrap interval.")


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
        "usercall": one(usercall.plot(an, pal, out_dir)),
        "energy": one(plot_energy(an, pal, out_dir)),
        "pareto": one(plot_pareto(an, pal, out_dir)),
        "sparsity": one(plot_sparsity(an, pal, out_dir)),
        "tuning": plot_tuning(an, pal, out_dir),
        "comparison": one(plot_comparison(an, pal, out_dir)),
    }
