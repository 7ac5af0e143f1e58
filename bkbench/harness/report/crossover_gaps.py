"""Crossover cells for baselines that ran in one mode but were declined or failed in the other.

The crossover table pairs timed series only, so a baseline whose forward was measured but whose forward +
backward was refused (fla-core's gated ``chunk_bwd_dqkwg`` on Hopper with Triton < 3.7.1: Mamba-2 SSD and
Gated DeltaNet) or crashed would simply be missing from the fwd+bwd table. :func:`gap_rows` gives such a pair a
row of its own, with the stored reason as its text, so the table says why there is no N*.

Only baselines with a timed series at the same (platform, shape, dtype) in another mode are listed; a baseline
that never ran there (no fp32 support, not installed) stays out of the table, as before.
"""

from __future__ import annotations

import math

import pandas as pd

from bkbench.harness.report.formatting import short_dtype
from bkbench.harness.report.series import BASELINE_KINDS, Series, assign_shapes

GAP_STATUSES = ("skipped", "crash", "timeout", "incorrect")
REASON_CHARS = 240


def gap_rows(df: pd.DataFrame, series: list[Series]) -> pd.DataFrame:
    """Rows in :func:`bkbench.harness.report.fits.crossover_table`'s columns, state "declined" (every row of the
    baseline's sweep skipped) or "failed" (a crash, timeout or incorrect result), one per BK-core series of the
    (platform, mode, shape) and missing baseline (impl, dtype)."""
    prim = [s for s in series if s.primary and s.ns.size >= 2]
    bks: dict[tuple, list[Series]] = {}
    for s in prim:
        if s.kind == "bk":
            bks.setdefault((s.platform, s.mode, s.shape), []).append(s)
    timed = {(s.platform, s.mode, s.shape, s.impl, s.dtype) for s in prim if s.kind in BASELINE_KINDS}
    ran = {(p, sh, i, d) for p, _, sh, i, d in timed}
    bad = df[df["status"].isin(GAP_STATUSES) & df["kind"].isin(BASELINE_KINDS) & df["n"].notna()].copy()
    if bad.empty or not bks:
        return pd.DataFrame()
    bad["timing_mode"] = ""  # a declined row has no timing mode; its sweep is that of the rows around it
    bad["shape"] = assign_shapes(bad)
    rows = []
    for (platform, mode, shape, impl, dtype), g in bad.groupby(["platform", "mode", "shape", "impl", "dtype"]):
        key = (platform, mode, shape)
        if key not in bks or (*key, impl, dtype) in timed or (platform, shape, impl, dtype) not in ran:
            continue
        declined = bool((g["status"] == "skipped").all())
        first = g.sort_values("n").iloc[0]
        reason = str(first["reason"] or first["status"])
        reason = reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"
        text = f"{'declined' if declined else str(first['status'])}: {reason}"
        kind = str(first["kind"])
        for bk in bks[key]:
            rows.append({
                "platform": platform, "mode": mode, "shape": shape, "bk": bk.label,
                "baseline": f"{impl} {short_dtype(str(dtype))}", "baseline_kind": kind,
                "state": "declined" if declined else "failed", "n_star": math.nan, "n_star_lo": math.nan,
                "n_star_hi": math.nan, "boot_agree": math.nan, "fit_n_star": math.nan, "fit_lo": math.nan,
                "fit_hi": math.nan, "fit_note": "", "common_n_min": math.nan, "common_n_max": math.nan,
                "baseline_first_oom_n": math.nan, "text": text, "fit_text": "no timed series in this mode",
            })
    return pd.DataFrame(rows)


def with_gaps(table: pd.DataFrame, df: pd.DataFrame, series: list[Series]) -> pd.DataFrame:
    """``table`` (the crossover table) with :func:`gap_rows` appended."""
    gaps = gap_rows(df, series)
    if gaps.empty:
        return table
    return pd.concat([table, gaps], ignore_index=True) if len(table) else gaps
