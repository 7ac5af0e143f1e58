"""The two-run comparison: per case, the time ratio of run B to run A with a bootstrap interval and an adjusted
significance test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bkbench.harness.report.data import case_ids
from bkbench.harness.report.fields import as_float, samples_of
from bkbench.harness.report.series import KIND_ORDER
from bkbench.harness.report.stats import benjamini_hochberg, bootstrap_medians, interval, mann_whitney_p


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-case comparison of run B against run A (matched by case id).

    ``ratio`` = median time B / median time A (< 1: B faster). Its 95 % interval is a bootstrap over both
    runs' raw samples (normal approximation in log space from ``time_ci95_s`` when a row has no samples); the
    two-sided Mann–Whitney p-value on the raw samples is adjusted for the number of cases
    (Benjamini–Hochberg). A case is called faster/slower only when the interval excludes 1 and the adjusted
    p-value is below 0.05."""
    a = a.assign(_cid=case_ids(a)).drop_duplicates("_cid", keep="last").set_index("_cid")
    b = b.assign(_cid=case_ids(b)).drop_duplicates("_cid", keep="last").set_index("_cid")
    both = a.index.intersection(b.index)
    rng = np.random.default_rng(seed)
    rows, status_changes = [], []
    for cid in both:
        ra, rb = a.loc[cid], b.loc[cid]
        if ra["status"] != rb["status"]:
            status_changes.append({"case_id": cid, "impl": rb["impl"], "n": rb["n"], "mode": rb["mode"],
                                   "status_a": ra["status"], "status_b": rb["status"],
                                   "reason_a": ra["reason"], "reason_b": rb["reason"]})
        ta, tb = ra["time_s"], rb["time_s"]
        if not (np.isfinite(ta) and np.isfinite(tb)):
            continue
        sa, sb = samples_of(ra), samples_of(rb)
        if sa is not None and sb is not None and sa.size > 1 and sb.size > 1:
            ma = bootstrap_medians(sa, reps, rng) * (ta / np.median(sa))
            mb = bootstrap_medians(sb, reps, rng) * (tb / np.median(sb))
            lo, hi = interval(mb / ma)
            p = mann_whitney_p(sa, sb)
            method = "raw samples"
        else:
            sd = math.hypot(as_float(ra["time_ci95_s"]) / 1.96 / ta, as_float(rb["time_ci95_s"]) / 1.96 / tb)
            if np.isfinite(sd) and sd > 0:
                z = abs(math.log(tb / ta)) / sd
                p = math.erfc(z / math.sqrt(2))
                lo, hi = (tb / ta) * math.exp(-1.96 * sd), (tb / ta) * math.exp(1.96 * sd)
                method = "stored CI95 (no raw samples)"
            else:
                lo, hi, p, method = math.nan, math.nan, math.nan, "no spread recorded"
        rows.append({"case_id": cid, "kind": rb["kind"], "impl": rb["impl"], "variant": rb["variant"],
                     "dtype": rb["dtype"], "mode": rb["mode"], "n": rb["n"], "batch": rb["batch"], "d": rb["d"],
                     "sparsity": rb["sparsity"], "time_a": ta, "time_b": tb, "ratio": tb / ta, "ratio_lo": lo,
                     "ratio_hi": hi, "p": p, "method": method})
    cmp = pd.DataFrame(rows)
    if len(cmp):
        cmp["q"] = benjamini_hochberg(cmp["p"].to_numpy())
        sig = (cmp["q"] < 0.05) & ((cmp["ratio_hi"] < 1) | (cmp["ratio_lo"] > 1))
        cmp["verdict"] = np.where(sig & (cmp["ratio"] < 1), "B faster",
                                  np.where(sig & (cmp["ratio"] > 1), "B slower", "no significant change"))
        cmp["_k"] = cmp["kind"].map(KIND_ORDER).fillna(9)
        cmp = cmp.sort_values(["_k", "impl", "variant", "dtype", "mode", "n"]).drop(columns="_k").reset_index(
            drop=True)
        geo = float(np.exp(np.log(cmp["ratio"]).mean()))
    else:
        geo = math.nan
    return {
        "cases": cmp, "status_changes": pd.DataFrame(status_changes),
        "only_a": sorted(set(a.index) - set(b.index)), "only_b": sorted(set(b.index) - set(a.index)),
        "geomean_ratio": geo,
        "counts": cmp["verdict"].value_counts().to_dict() if len(cmp) else {},
    }
