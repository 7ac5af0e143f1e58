"""User call vs bare kernel: which BK-core number a row holds, and the overhead between the two.

A BK-core row measured since the harness times the call users make (``metrics_json["workload"]["timed_call"]
== "bk_core"``, :mod:`bkbench.harness.usercall`) holds two timings: its ``time_*``, ``gbps`` and ``roofline_pct`` are
the **user call** ``bkbench.bk_core(a, b, c, z, impl=...)`` counted with the call's own ideal bytes (a, b, c
read, G written), and ``metrics_json["kernel_*"]`` the **bare kernel** ``rec.fn(a, k, z)`` on prepared inputs
with its own (a, k read, G written). An older BK-core row (no marker) timed the bare kernel only.

:func:`derive` adds these columns to the report's frame (:mod:`bkbench.harness.report.data`):

``timed``           "user call (bk_core)" / "bare kernel" for BK-core rows, "" for baselines;
``kernel_time_s``   the bare kernel's median seconds per call (ok rows of user-call runs, else NaN);
``kernel_gbps_eff``, ``kernel_roof_pct``  its achieved GB/s and % of the run's copy bandwidth.

:func:`overhead_rows` (one row per case with both timings), :func:`overhead_table` (one row per series),
:func:`notes` (what the page must say about mixed data) feed the roofline section; the figure is
:func:`bkbench.harness.report.plots_efficiency.plot_usercall`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bkbench.harness.report.fields import parse_json

USER_CALL = "user call (bk_core)"
BARE_KERNEL = "bare kernel"
SERIES_KEYS = ["platform", "impl", "variant", "dtype", "mode"]


def _metrics(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else None


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``timed``, ``kernel_time_s``, ``kernel_gbps_eff`` and ``kernel_roof_pct`` (see the module docstring)
    to a frame that has ``metrics_json``, ``kind``, ``status``, ``time_s`` and ``copy_bandwidth_gbs``."""
    metrics = df["metrics_json"].map(parse_json)
    call = metrics.map(lambda m: (_metrics(_metrics(m, "workload"), "timed_call") or "") == "bk_core")
    bk = df["kind"] == "bk"
    df["timed"] = np.where(bk & call, USER_CALL, np.where(bk, BARE_KERNEL, ""))

    def num(key: str) -> pd.Series:
        return pd.to_numeric(metrics.map(lambda m: _metrics(m, key)), errors="coerce").astype(float)

    ok = bk & call & df["time_s"].notna()
    t = num("kernel_time_median_s")
    df["kernel_time_s"] = t.where(ok & np.isfinite(t) & (t > 0))
    gbps = num("kernel_gbps").where(df["kernel_time_s"].notna())
    df["kernel_gbps_eff"] = gbps.fillna(num("kernel_ideal_bytes") / df["kernel_time_s"] / 1e9)
    roof = num("kernel_roofline_pct").where(df["kernel_time_s"].notna())
    df["kernel_roof_pct"] = roof.fillna(df["kernel_gbps_eff"] / df["copy_bandwidth_gbs"] * 100.0)
    return df


def overhead_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ok BK-core case with both timings: the case, both medians, their difference (s) and ratio
    (user call / bare kernel), and both achieved % of copy bandwidth; sorted by series and size."""
    if "kernel_time_s" not in df.columns or not len(df):
        return pd.DataFrame()
    both = df[df["kernel_time_s"].notna() & df["time_s"].notna() & df["tuning_config"].isna()]
    if both.empty:
        return pd.DataFrame()
    out = both[[*SERIES_KEYS, "timing_mode", "batch", "d", "n", "elements"]].copy()
    out["call_s"] = both["time_s"]
    out["kernel_s"] = both["kernel_time_s"]
    out["overhead_s"] = both["time_s"] - both["kernel_time_s"]
    out["ratio"] = both["time_s"] / both["kernel_time_s"]
    out["call_pct"] = both["roof_pct"]
    out["kernel_pct"] = both["kernel_roof_pct"]
    return out.sort_values([*SERIES_KEYS, "elements"]).reset_index(drop=True)


def overhead_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per series (platform, impl, variant, dtype, mode): the overhead of the user call over the bare kernel at
    the smallest and at the largest size measured (µs and ratio), and both % of copy bandwidth at the largest."""
    rows = overhead_rows(df)
    if rows.empty:
        return rows
    out = []
    for key, g in rows.groupby(SERIES_KEYS, dropna=False):
        g = g.sort_values("elements")
        first, last = g.iloc[0], g.iloc[-1]
        out.append(dict(zip(SERIES_KEYS, key)) | {
            "points": len(g), "small_elements": first["elements"], "small_overhead_s": first["overhead_s"],
            "small_ratio": first["ratio"], "large_elements": last["elements"], "large_call_s": last["call_s"],
            "large_kernel_s": last["kernel_s"], "large_overhead_s": last["overhead_s"], "large_ratio": last["ratio"],
            "large_call_pct": last["call_pct"], "large_kernel_pct": last["kernel_pct"],
        })
    return pd.DataFrame(out).sort_values(["platform", "mode", "impl"]).reset_index(drop=True)


def series_timed(table: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """For each row of a per-series table (``platform, impl, variant, dtype, mode`` columns), what its BK-core
    times are: "user call (bk_core)", "bare kernel", or both joined when the series mixes rows of both kinds."""
    if not len(table):
        return []
    ok = df[df["time_s"].notna() & (df["kind"] == "bk")]
    kinds = ok.groupby(SERIES_KEYS, dropna=False)["timed"].agg(lambda s: " + ".join(sorted(set(s))))
    return [str(kinds.get(tuple(r[k] for k in SERIES_KEYS), "")) for _, r in table.iterrows()]


def notes(df: pd.DataFrame) -> list[str]:
    """What the page must say about which BK-core number it shows (empty when there are no BK-core rows)."""
    ok = df[(df["kind"] == "bk") & df["time_s"].notna()] if len(df) else df
    if not len(ok):
        return []
    n_call = int((ok["timed"] == USER_CALL).sum())
    n_kernel = int((ok["timed"] == BARE_KERNEL).sum())
    if n_kernel == 0:
        return []
    if n_call == 0:
        return [f"Every BK-core time in this report ({n_kernel} cases) is the bare kernel on prepared inputs "
                "(rec.fn(a, k, z): measured before the harness timed the user call bkbench.bk_core(...)), "
                "counted with the kernel's ideal bytes (a, k read, G written). The baselines are timed at their "
                "user-facing calls, so crossovers against them flatter the BK-core by the call's overhead."]
    return [f"BK-core times mix two kinds: {n_call} cases time the user call bkbench.bk_core(...) and {n_kernel} "
            "the bare kernel on prepared inputs (runs measured before the harness timed the user call); tables "
            "say which per series, and the two are not comparable with each other."]
