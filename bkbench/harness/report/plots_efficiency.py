"""Figures of how efficiently the work runs: achieved bandwidth against the measured copy bandwidth (roofline),
the user call ``bk_core`` against the bare kernel (:mod:`bkbench.harness.report.usercall`), and energy per element and
per token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.lines import Line2D

from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.formatting import short_dtype
from bkbench.harness.report.plotstyle import (
    DTYPE_STYLE,
    KIND_MARKER,
    Figure,
    Palette,
    grid,
    legend_below,
    plt,
    save,
    size_axis,
)
from bkbench.harness.report.usercall import BARE_KERNEL, USER_CALL, overhead_rows


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
        size_axis(ax, ok["elements"].to_numpy())
        ax.set_xlabel("problem size B·d·N (elements)")
        grid(ax)
    ax1.set_yscale("log")
    ax1.set_ylabel("achieved bandwidth (ideal bytes / time, GB/s)")
    ax1.set_title("achieved GB/s (forward)", fontsize=11)
    if has_pct:
        ax2 = axes[0][1]
        ax2.axhline(100, color="black", linestyle="--", linewidth=1)
        ax2.set_ylabel("% of the run's measured copy bandwidth")
        ax2.set_ylim(bottom=0)
        ax2.set_title("% of copy bandwidth (forward)", fontsize=11)
    legend_below(fig, list(handles.values()), list(handles), ncol=3)
    name = save(fig, out_dir, "roofline.png")
    return Figure(name, "Roofline", "Ideal bytes come from each implementation's analytic bytes model (stored by "
                  "the runner; a BK-core row counts what it timed: the user call bk_core's a, b, c, or the bare "
                  "kernel's a, k); the ceiling is the device copy bandwidth measured in the same run. One line per "
                  "implementation and dtype (its most-measured options); the table lists every variant.")


def plot_usercall(an: Analysis, pal: Palette, out_dir: Path) -> Figure | None:
    """Figure, for the most-measured dtype: per BK-core implementation (its drawn series) the median time per
    forward call of the user call (solid) and of the bare kernel (dotted) vs B·d·N, and the ratio user call /
    bare kernel (forward and forward + backward). None without data."""
    rows = overhead_rows(an.loaded.df)
    if rows.empty:
        return None
    prim = {(s.impl, s.variant, s.dtype) for s in an.series if s.primary and s.kind == "bk"}
    rows = rows[[(i, v, d) in prim for i, v, d in zip(rows["impl"], rows["variant"], rows["dtype"])]]
    if rows.empty:
        return None
    counts = rows["dtype"].value_counts()
    dtype = "float32" if counts.get("float32", 0) == counts.max() else str(counts.idxmax())
    rows = rows[rows["dtype"] == dtype]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), squeeze=False)
    ax1, ax2 = axes[0]
    handles: dict[str, Any] = {}
    for (impl, variant, mode, _platform), g in rows.groupby(["impl", "variant", "mode", "platform"]):
        g = g.groupby("elements", as_index=False)[["call_s", "kernel_s", "ratio"]].median()
        col = pal(impl)
        if mode == "fwd":
            ax1.plot(g["elements"], g["call_s"], color=col, marker="o", linestyle="-", markersize=4)
            ax1.plot(g["elements"], g["kernel_s"], color=col, marker="o", linestyle=":", markersize=3, alpha=0.8)
        ax2.plot(g["elements"], g["ratio"], color=col, marker="o" if mode == "fwd" else "s",
                 linestyle="-" if mode == "fwd" else "--", markersize=4)
        lab = f"{impl}{f' [{variant}]' if variant else ''}"
        handles[lab] = Line2D([], [], color=col, marker="o", linestyle="-", label=lab)
    handles[USER_CALL] = Line2D([], [], color="grey", linestyle="-", label=f"{USER_CALL} (left)")
    handles[BARE_KERNEL] = Line2D([], [], color="grey", linestyle=":", label=f"{BARE_KERNEL} (left)")
    handles["fwd+bwd"] = Line2D([], [], color="grey", marker="s", linestyle="--", label="fwd+bwd (right)")
    for ax in (ax1, ax2):
        size_axis(ax, rows["elements"].to_numpy())
        ax.set_xlabel("problem size B·d·N (elements)")
        ax.set_yscale("log")
        grid(ax)
    ax1.set_ylabel("median time per call (s)")
    ax1.set_title(f"user call (solid) vs bare kernel (dotted), forward, {short_dtype(dtype)}", fontsize=11)
    ax2.axhline(1, color="black", linestyle="--", linewidth=1)
    ax2.set_ylabel("time of user call / time of bare kernel")
    ax2.set_title(f"overhead of the user call, {short_dtype(dtype)}", fontsize=11)
    legend_below(fig, list(handles.values()), list(handles), ncol=4)
    name = save(fig, out_dir, "usercall.png")
    return Figure(name, "User call (bk_core) vs bare kernel",
                  "User call: bkbench.bk_core(a, b, c, z, impl=...) on inputs as a user holds them. Bare "
                  "kernel: the registered kernel on prepared inputs. Both timed the same way, one after the "
                  "other, in the same case (on a busy machine the difference between them is noisy). The "
                  "table gives every series with both achieved % of copy bandwidth, each counted with its "
                  "own ideal bytes (user call: a, b, c read, G written, 20 B per fp32 element, 12 B with "
                  "scalar couplings; bare kernel: a, k read, G written, 16 B per element).")


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
            size_axis(ax, e["n"].to_numpy())
            ax.set_xlabel("sequence length N")
            ax.set_ylabel(what)
            grid(ax)
        axes[row][0].set_title(f"B = {bb}, d = {dd}: J / element (one chain position; B·d·N per call)", fontsize=10)
        axes[row][1].set_title(f"B = {bb}, d = {dd}: J / token (B·N tokens per call)", fontsize=10)
    handles["dotted, hollow: dynamic (idle-subtracted)"] = Line2D([], [], color="grey", linestyle=":", marker="o",
                                                                  fillstyle="none")
    if e["capped"].any():
        handles["red ring: power-capped trial"] = Line2D([], [], linestyle="none", marker="o", markersize=10,
                                                         markerfacecolor="none", markeredgecolor="red")
    legend_below(fig, list(handles.values()), list(handles), ncol=3)
    name = save(fig, out_dir, "energy.png")
    return Figure(name, "Energy", "Solid: total energy per call divided by elements/tokens; dotted: dynamic "
                  "(idle power subtracted). Only cases with a measured energy (NVML counter) are drawn.")
