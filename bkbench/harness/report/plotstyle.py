"""The look every figure of the report shares: the matplotlib backend (Agg, PNG files), one colour per
implementation (:class:`Palette`), markers by kind and line styles by dtype, log axes labelled in the report's
units, legends below the axes, and writing a figure (:func:`save`, :class:`Figure`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from bkbench.harness.report.analysis import Analysis  # noqa: E402
from bkbench.harness.report.formatting import fmt_n, fmt_time  # noqa: E402
from bkbench.harness.report.series import KIND_ORDER, Series  # noqa: E402

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
    """The palette of a report: every implementation of its rows and of its comparison."""
    df = an.loaded.df
    pairs = list(zip(df["impl"], df["kind"]))
    if an.comparison is not None and len(an.comparison["cases"]):
        pairs += list(zip(an.comparison["cases"]["impl"], an.comparison["cases"]["kind"]))
    return Palette(pairs)


# -- axis helpers ---------------------------------------------------------------------------------------------


def time_axis(ax: plt.Axes, axis: str = "y") -> None:
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


def size_axis(ax: plt.Axes, values: np.ndarray | None = None) -> None:
    """Log2 size axis (x) labelled "256", "4k", "1Mi"; every other octave labelled when ``values`` span more than
    14 octaves."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_n(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if values is not None and len(values):
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        if lo > 0 and hi / lo > 2**14:  # too many octaves for a label on each: label every other one
            ticks = 2.0 ** np.arange(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1, 2)
            ax.set_xticks(ticks)


def ratio_axis(ax: plt.Axes, axis: str = "y") -> None:
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


def grid(ax: plt.Axes) -> None:
    """Light major and fainter minor grid lines."""
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def save(fig: plt.Figure, out_dir: Path, name: str) -> str:
    """Write ``fig`` as ``out_dir/name`` (PNG, white background), close it and return ``name``."""
    path = out_dir / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return name


def style(s_kind: str, dtype: str) -> dict:
    """Plot keywords of a series: marker by kind, line style by dtype."""
    return {"marker": KIND_MARKER.get(s_kind, "D"), "linestyle": DTYPE_STYLE.get(dtype, "-")}


def legend_below(fig: plt.Figure, handles: list, labels: list, ncol: int = 3) -> None:
    """A figure legend under the axes; lays the axes out first so the legend extends the canvas."""
    fig.tight_layout()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False,
                   fontsize=9)


def alpha_text(s: Series) -> str:
    """Legend suffix with the series' fitted exponent and its 95 % CI ("" without a fit)."""
    f = s.fit
    if f is None:
        return ""
    if f.n_points > 2:
        return f"  α={f.alpha:.2f} [{f.alpha_lo:.2f}, {f.alpha_hi:.2f}]"
    return f"  α={f.alpha:.2f} (2 points, no CI)"
