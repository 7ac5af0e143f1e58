"""Figures of the autotuning section: tuned against default configuration, and the dispatch maps over
(N, batch)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.formatting import fmt_n, short_dtype
from bkbench.harness.report.plotstyle import Figure, Palette, grid, plt, save, size_axis


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
        size_axis(ax, sp["n"].to_numpy())
        ax.set_xlabel("sequence length N")
        ax.set_ylabel("tuned speed-up (default time / tuned time, ×)")
        grid(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
        fig.tight_layout()
        figs.append(Figure(save(fig, out_dir, "tuning_speedup.png"), "Tuned vs default configuration",
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
        figs.append(Figure(save(fig, out_dir, "dispatch_map.png"), "Dispatch map over (N, batch)",
                           "Left (when present): the implementation impl=\"auto\" chose, as recorded by the runner; "
                           "right: the fastest exact implementation measured at each (N, B)."))
    return figs
