"""The report's per-topic tables computed from the loaded rows and the series: memory limits (first N out of
memory), the headline (main slices and the BK-core series each speaks for), roofline, energy, the accuracy–speed
Pareto front, sparsity and the list of every case that did not produce a speed.

Only rows with status ``ok`` contribute a time; nothing here invents or fills in a measurement.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bkbench.harness.report.fields import as_float, parse_json
from bkbench.harness.report.fits import Crossover
from bkbench.harness.report.series import BASELINE_KINDS, KIND_ORDER, Series, assign_shapes

# -- memory limits --------------------------------------------------------------------------------------------


def oom_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (platform, kind, impl, variant, dtype, mode, sparsity, shape) with an OOM: the first N that ran out
    of memory and the largest N that ran (status ok). ``shape`` is assigned as for the series
    (:func:`assign_shapes`, over the ok and oom rows together), so a constant-work sweep such as B chosen to fill
    the GPU gives one row per sweep; ``batch`` and ``d`` are those of the first N out of memory."""
    cols = ["platform", "kind", "impl", "variant", "dtype", "mode", "sparsity", "shape"]
    out_cols = ["platform", "kind", "impl", "variant", "dtype", "mode", "batch", "d", "sparsity", "shape",
                "first_oom_n", "largest_ok_n", "reason"]
    rows_df = df[df["status"].isin(["ok", "oom"]) & df["n"].notna()].copy()
    if not (rows_df["status"] == "oom").any():
        return pd.DataFrame(columns=out_cols)
    rows_df["timing_mode"] = ""  # an oom row has no timing mode; its sweep is that of the ok rows around it
    rows_df["shape"] = assign_shapes(rows_df)
    rows = []
    for key, g in rows_df.groupby(cols, dropna=False):
        oom = g[g["status"] == "oom"].sort_values("n")
        if oom.empty:
            continue
        ran = g[g["status"] == "ok"]
        first = oom.iloc[0]
        rows.append(dict(zip(cols, key)) | {
            "batch": first["batch"], "d": first["d"],
            "first_oom_n": float(first["n"]),
            "largest_ok_n": float(ran["n"].max()) if len(ran) else math.nan,
            "reason": str(first["reason"] or ""),
        })
    out = pd.DataFrame(rows, columns=out_cols)
    if len(out):
        out["_k"] = out["kind"].map(KIND_ORDER).fillna(9)
        out = out.sort_values(["platform", "_k", "impl", "mode", "dtype"]).drop(columns="_k").reset_index(drop=True)
    return out


# -- headline -----------------------------------------------------------------------------------------------------


def pick_headline_bk(series: list[Series], platform: str, mode: str, slice_: tuple) -> Series | None:
    """The BK-core series the summary speaks for: among primary, fitted, exact (or of unknown exactness) BK
    series of the slice, the fastest at the largest size any of them measured."""
    cands = [s for s in series if s.primary and s.kind == "bk" and s.platform == platform and s.mode == mode
             and s.slice == slice_ and s.fit is not None and s.exact is not False]
    if not cands:
        return None
    top = max(s.ns.max() for s in cands)
    at_top = [s for s in cands if s.ns.max() == top]
    return min(at_top, key=lambda s: s.time_at(top))


def main_slices(series: list[Series], limit: int = 5) -> list[tuple]:
    """(platform, shape) slices ranked by how many primary series with >= 3 sizes they hold — slices with both
    BK-core and baseline series first — at most ``limit`` per platform."""
    score: dict[tuple, list[int]] = {}
    kinds: dict[tuple, set[str]] = {}
    for s in series:
        if s.primary and s.ns.size >= 2:
            score.setdefault(s.slice, [0, 0])
            score[s.slice][0] += s.ns.size >= 3
            score[s.slice][1] += s.ns.size
            kinds.setdefault(s.slice, set()).add("bk" if s.kind == "bk" else "base")
    ranked = sorted((k for k in score if score[k][0]),
                    key=lambda k: (len(kinds[k]) < 2, -score[k][0], -score[k][1], str(k)))
    out, per = [], {}
    for k in ranked:
        per[k[0]] = per.get(k[0], 0) + 1
        if per[k[0]] <= limit:
            out.append(k)
    return out


def headline(series: list[Series], cs: list[Crossover], slices: list[tuple]) -> list[dict[str, Any]]:
    """Per (main slice, mode): the BK-core series, its exponent, each baseline's exponent and N*.

    An entry whose ``bk`` is None says that baselines were measured at that shape and mode but no exact
    BK-core series with two or more sizes was (``baselines`` lists them)."""
    out = []
    for sl in slices:
        modes = sorted({s.mode for s in series if s.slice == sl}, key=lambda m: (m != "fwd", m))
        for mode in modes:
            bk = pick_headline_bk(series, sl[0], mode, sl)
            if bk is None:
                bases = sorted({s.label for s in series if s.primary and s.slice == sl and s.mode == mode
                                and s.kind in BASELINE_KINDS and s.ns.size >= 2})
                if bases:
                    out.append({"platform": sl[0], "shape": sl[1], "mode": mode, "bk": None, "rows": [],
                                "baselines": bases})
                continue
            rows = []
            for c in cs:
                if c.bk is bk:
                    rows.append({"baseline": c.base.label, "kind": c.base.kind, "fit": c.base.fit,
                                 "crossover": c})
            rows.sort(key=lambda r: (KIND_ORDER.get(r["kind"], 9), r["baseline"]))
            out.append({"platform": sl[0], "shape": sl[1], "mode": mode, "bk": bk, "rows": rows, "baselines": []})
    return out


# -- roofline -----------------------------------------------------------------------------------------------------


def roofline_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per BK series (sparsity 0): best and largest-size achieved GB/s and % of the run's copy bandwidth."""
    ok = df[(df["kind"] == "bk") & df["gbps_eff"].notna() & (df["sparsity"] == 0) & (df["impl"] != "auto")
            & df["tuning_config"].isna()]
    rows = []
    for key, g in ok.groupby(["platform", "impl", "variant", "dtype", "mode"], dropna=False):
        g = g.sort_values("elements")
        best = g.loc[g["gbps_eff"].idxmax()]
        last = g.iloc[-1]
        rows.append(dict(zip(["platform", "impl", "variant", "dtype", "mode"], key)) | {
            "best_gbps": best["gbps_eff"], "best_pct": best["roof_pct"], "best_elements": best["elements"],
            "best_n": best["n"], "best_batch": best["batch"],
            "last_gbps": last["gbps_eff"], "last_pct": last["roof_pct"], "last_elements": last["elements"],
            "copy_bw": best["copy_bandwidth_gbs"], "points": len(g),
        })
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values(["platform", "mode", "best_gbps"], ascending=[True, True, False]).reset_index(drop=True)
    return out


# -- energy -------------------------------------------------------------------------------------------------------


def _capped(status: Any, energy_json: Any) -> bool:
    if isinstance(status, str) and "cap" in status.lower():
        return True
    ej = parse_json(energy_json)
    if isinstance(ej, dict):
        for k in ("capped_trials", "power_capped_trials"):
            v = as_float(ej.get(k))
            if np.isfinite(v) and v > 0:
                return True
        if ej.get("power_capped"):
            return True
        trials = ej.get("trials")
        if isinstance(trials, list):
            return any(isinstance(t, dict) and (t.get("capped") or t.get("power_capped")
                                                or (isinstance(t.get("telemetry"), dict)
                                                    and t["telemetry"].get("power_capped")))
                       for t in trials)
    return False


def energy_table(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(measured energy rows with per-element / per-token figures and a ``capped`` flag,
    count of rows whose energy was not measured, by energy_status)."""
    ok = df[(df["status"] == "ok")]
    has = ok[np.isfinite(ok["energy_j_per_call"])].copy()
    no = ok[~np.isfinite(ok["energy_j_per_call"]) & ok["energy_status"].notna()]
    missing = (no.groupby("energy_status").size().rename("cases").reset_index()
               if len(no) else pd.DataFrame(columns=["energy_status", "cases"]))
    if has.empty:
        return has, missing
    has["j_per_element"] = has["energy_j_per_element"].fillna(has["energy_j_per_call"] / has["elements"])
    has["dyn_j_per_element"] = has["energy_dynamic_j_per_call"] / has["elements"]
    has["j_per_token"] = has["energy_j_per_call"] / has["tokens"]
    has["dyn_j_per_token"] = has["energy_dynamic_j_per_call"] / has["tokens"]
    has["capped"] = [_capped(s, j) for s, j in zip(has["energy_status"], has["energy_json"])]
    has["_k"] = has["kind"].map(KIND_ORDER).fillna(9)
    has = has.sort_values(["platform", "mode", "_k", "impl", "variant", "dtype", "n"]).drop(columns="_k")
    return has.reset_index(drop=True), missing


# -- accuracy vs speed ----------------------------------------------------------------------------------------


def pareto_front(time: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Mask of non-dominated points (smaller time and smaller error are better; ties keep the first)."""
    order = np.lexsort((err, time))
    mask = np.zeros(time.size, dtype=bool)
    best = math.inf
    for i in order:
        if err[i] < best:
            mask[i] = True
            best = err[i]
    return mask


def pareto(df: pd.DataFrame) -> dict[str, Any]:
    """Accuracy–speed points of the BK-core implementations at each shape, and each shape's front.

    Returns ``{"shape": chosen (platform, mode, n, batch, d), "points": frame of that shape with a ``front``
    column, "fronts": frame of the front members of every shape with >= 2 variants}``; empty when no row has
    both a time and a relative error."""
    pts = df[(df["kind"] == "bk") & df["time_s"].notna() & np.isfinite(df["rel_err"]) & (df["sparsity"] == 0)
             & (df["impl"] != "auto") & df["tuning_config"].isna()].copy()
    if pts.empty:
        return {"shape": None, "points": pts, "fronts": pts}
    shape_cols = ["platform", "mode", "n", "batch", "d"]
    pts["_variant"] = pts["impl"] + "|" + pts["variant"] + "|" + pts["dtype"]
    agg = (pts.groupby([*shape_cols, "impl", "variant", "dtype"], dropna=False)
           .agg(time_s=("time_s", "median"), rel_err=("rel_err", "max"), tolerance=("tolerance", "max"))
           .reset_index())
    fronts, counts = [], {}
    for key, g in agg.groupby(shape_cols, dropna=False):
        if len(g) < 2:
            continue
        m = pareto_front(g["time_s"].to_numpy(), np.maximum(g["rel_err"].to_numpy(), 1e-300))
        g = g.assign(front=m)
        counts[key] = len(g)
        fronts.append(g)
    if not fronts:
        return {"shape": None, "points": agg.iloc[0:0], "fronts": agg.iloc[0:0]}
    allf = pd.concat(fronts, ignore_index=True)
    shape = max(counts, key=lambda k: (counts[k], k[1] == "fwd", as_float(k[2])))
    sel = np.ones(len(allf), dtype=bool)
    for c, v in zip(shape_cols, shape):
        sel &= (allf[c] == v).to_numpy() | (allf[c].isna() & pd.isna(v)).to_numpy()
    points = allf[sel].sort_values("time_s").reset_index(drop=True)
    front_rows = allf[allf["front"]].sort_values([*shape_cols, "time_s"]).reset_index(drop=True)
    return {"shape": dict(zip(shape_cols, shape)), "points": points, "fronts": front_rows}


# -- sparsity -----------------------------------------------------------------------------------------------------


def sparsity_table(df: pd.DataFrame) -> pd.DataFrame:
    """Times of every (platform, impl, variant, dtype, mode, n, batch, d) measured at >= 2 sparsities, with the
    speedup over the same case at sparsity 0 where it exists."""
    ok = df[df["time_s"].notna() & (df["impl"] != "auto") & df["tuning_config"].isna()]
    keys = ["platform", "kind", "impl", "variant", "dtype", "mode", "n", "batch", "d"]
    rows = []
    for key, g in ok.groupby(keys, dropna=False):
        if g["sparsity"].nunique() < 2:
            continue
        per = g.groupby("sparsity")["time_s"].median()
        t0 = per.get(0.0, math.nan)
        for s, t in per.items():
            rows.append(dict(zip(keys, key)) | {"sparsity": float(s), "time_s": float(t),
                                                 "speedup_vs_dense": float(t0 / t) if np.isfinite(t0) else math.nan})
    out = pd.DataFrame(rows)
    if len(out):
        out["_k"] = out["kind"].map(KIND_ORDER).fillna(9)
        out = out.sort_values(["platform", "mode", "_k", "impl", "n", "sparsity"]).drop(columns="_k")
    return out.reset_index(drop=True)


# -- failures -----------------------------------------------------------------------------------------------------


def failures(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every row whose status is not ok, with its reason; counts per impl × status)."""
    bad = df[df["status"] != "ok"].copy()
    order = {"crash": 0, "timeout": 1, "incorrect": 2, "oom": 3, "skipped": 4}
    bad["_o"] = bad["status"].map(order).fillna(9)
    bad = bad.sort_values(["_o", "impl", "variant", "mode", "n"]).drop(columns="_o").reset_index(drop=True)
    counts = (df.groupby(["impl", "status"]).size().unstack(fill_value=0) if len(df) else pd.DataFrame())
    return bad, counts
