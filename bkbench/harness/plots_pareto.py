"""Accuracy–speed Pareto plot from measured rows (time, error) — used by bench/lut_lns_gpu.py.

A row is a mapping with at least ``label`` (str), ``family`` (str, one colour/marker per family),
``time_s`` (median seconds per call) and ``error`` (max|G - G_ref| / max|G_ref|, float64 reference). Rows
without a finite time or error are left out of the plot (and listed in the caption). Errors below
``floor`` are drawn at the floor (an exact method in float32 sits at ~1e-7).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (smaller time and smaller error are better), sorted by time."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    title: str = "accuracy vs time",
    floor: float = 1e-8,
) -> Path:
    """Scatter error (log) against median time (log, microseconds); the Pareto front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    good = [
        r for r in rows
        if isinstance(r.get("time_s"), (int, float)) and math.isfinite(r["time_s"]) and r["time_s"] > 0
        and isinstance(r.get("error"), (int, float)) and math.isfinite(r["error"])
    ]
    left_out = [str(r.get("label")) for r in rows if r not in good]
    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=130)
    families = sorted({str(r.get("family", "")) for r in good})
    markers = "osD^v<>pPX*h"
    cmap = plt.get_cmap("tab10")
    for fi, fam in enumerate(families):
        pts = [r for r in good if str(r.get("family", "")) == fam]
        xs = [r["time_s"] * 1e6 for r in pts]
        ys = [max(r["error"], floor) for r in pts]
        ax.scatter(xs, ys, label=fam, marker=markers[fi % len(markers)], color=cmap(fi % 10), s=38, zorder=3)
        for r, x, y in zip(pts, xs, ys):
            ax.annotate(str(r["label"]), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    pts = [(r["time_s"] * 1e6, max(r["error"], floor)) for r in good]
    front = pareto_front(pts)
    if len(front) > 1:
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="0.4", lw=1.0, ls="--", zorder=2, label="Pareto front")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("median time per call (µs, L2 flushed)")
    ax.set_ylabel("max|G - G_ref| / max|G_ref|")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="best")
    if left_out:
        fig.text(0.01, 0.01, "not plotted (no finite time/error): " + ", ".join(left_out), fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
