"""What the report computes from the results: scaling series and power-law fits, crossovers with
uncertainty, memory limits, roofline, energy, the accuracy–speed Pareto front, sparsity, autotuning, a
two-run comparison, and the list of every case that did not produce a speed.

Inputs are the normalised frame of :mod:`bkbench.report.data` (one row per case). Only rows with status
``ok`` contribute a time; nothing here invents or fills in a measurement. Every function returns plain
pandas DataFrames / dataclasses that :mod:`bkbench.report.plots` and :mod:`bkbench.report.render` display.

Definitions
-----------
*Shape*: how the work varies along a series. ``"B8_d512"``: fixed batch and width (B·d chains of length N,
the equal-work axes every family shares); ``"E16777216"``: a constant-work sweep — a suite group whose
batch·d shrinks as N grows so that B·d·N stays constant (one shape per N, one element count).
*Series*: the ok rows sharing (platform, kind, impl, variant, dtype, mode, shape, sparsity, timing mode),
ordered by N; per N the time is the median of the rows' medians (several seeds or rows pool their samples).
Crossovers compare series of the same shape only (equal work at every N).
*Primary series*: per (platform, impl, dtype, mode, shape) at sparsity 0 and the report's main timing mode
(the most common one, normally ``cold``), the variant (options) measured at the most sizes, the registered
default options winning ties; these are drawn and compared; every series is fitted and listed.
*Fit*: ordinary least squares of log t on log N over the fit range (see :func:`fit_range`); 95 % CI of the
exponent from Student's t with P - 2 degrees of freedom.
*Crossover N\\**: where a BK-core series becomes and stays faster than a baseline series. Measured: the last
sign change of log(t_baseline / t_bk) over the sizes both ran, interpolated linearly in log-log; its 95 %
interval from a bootstrap over the raw timing samples of every point (``samples_json``; where a row has no
samples, a normal approximation from ``time_ci95_s``). From fits: c_bk N^a_bk = c_base N^a_base solved for N,
its interval from draws of both fits' parameters — an extrapolation when it lies outside the measured sizes.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bkbench.report.crossover_gaps import with_gaps
from bkbench.report.data import Loaded, case_ids, parse_json, samples_of
from bkbench.report.stats import (
    PowerLawFit,
    benjamini_hochberg,
    bootstrap_medians,
    fit_power_law,
    mann_whitney_p,
    sample_fit_params,
)

KIND_ORDER = {"bk": 0, "ssm": 1, "attention": 2}
BASELINE_KINDS = ("ssm", "attention")
SERIES_KEY = ["platform", "kind", "impl", "variant", "dtype", "mode", "shape", "sparsity", "timing_mode"]
SHORT_DTYPE = {"float32": "f32", "float64": "f64", "bfloat16": "bf16", "float16": "f16", "complex64": "c64",
               "complex128": "c128"}
AUTO_KEYS = ("auto_impl", "chosen_impl", "impl_chosen", "dispatch_impl", "selected_impl")
FLOOR_FACTOR = 2.0
DEFAULT_REPS = 1000


def short_dtype(dtype: str) -> str:
    return SHORT_DTYPE.get(dtype, dtype)


# -- implementation facts (from the registry when it can be imported) -----------------------------------------


def implementation_facts() -> dict[str, dict[str, Any]]:
    """``{name: {"exact", "kind", "description"}}`` from the default registry; ``{}`` when unavailable."""
    try:
        from bkbench.registry import default_registry

        return {r.name: {"exact": r.exact, "kind": r.kind, "description": r.description,
                         "defaults": dict(r.defaults)} for r in default_registry().implementations(None)}
    except Exception:  # the report must render without the kernels package (e.g. on a laptop)
        return {}


# -- series -------------------------------------------------------------------------------------------------


@dataclass
class Series:
    """One scaling curve. ``ns`` (P,) sorted distinct sizes, ``t`` (P,) seconds (median per size),
    ``samples`` a list of P raw-sample arrays (None where a row had none) and ``sigma`` (P,) the fallback
    standard deviation of each median (from ``time_ci95_s``; 0 when unknown)."""

    key: tuple
    ns: np.ndarray
    t: np.ndarray
    samples: list[np.ndarray | None]
    sigma: np.ndarray
    fit: PowerLawFit | None = None
    fit_mask: np.ndarray | None = None
    primary: bool = False
    exact: bool | None = None
    default_like: bool = False

    def __getattr__(self, name: str) -> Any:
        if name in SERIES_KEY:
            return self.key[SERIES_KEY.index(name)]
        raise AttributeError(name)

    @property
    def label(self) -> str:
        """``impl [variant] dtype`` — the name used in legends and tables."""
        v = f" [{self.variant}]" if self.variant else ""
        s = f" s={self.sparsity:g}" if self.sparsity else ""
        return f"{self.impl}{v} {short_dtype(self.dtype)}{s}"

    @property
    def slice(self) -> tuple:
        return (self.platform, self.shape)

    @property
    def batch(self) -> float:
        m = re.fullmatch(r"B(-?\d+)_d(-?\d+)", self.shape)
        return float(m.group(1)) if m else math.nan

    @property
    def d(self) -> float:
        m = re.fullmatch(r"B(-?\d+)_d(-?\d+)", self.shape)
        return float(m.group(2)) if m else math.nan

    def time_at(self, n: float) -> float:
        hit = np.nonzero(self.ns == n)[0]
        return float(self.t[hit[0]]) if hit.size else math.nan

    def boot(self, reps: int, seed: int = 0) -> np.ndarray:
        """Bootstrap medians, shape (reps, P): resampled raw samples, else normal(t, sigma). Computed once per
        (reps, seed) and cached, so every pair this series enters uses the same resamples."""
        cache = self.__dict__.setdefault("_boot_cache", {})
        if (reps, seed) not in cache:
            cache[(reps, seed)] = self._boot(reps, np.random.default_rng([seed, zlib.crc32(repr(self.key).encode())]))
        return cache[(reps, seed)]

    def _boot(self, reps: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((reps, self.ns.size))
        for j, (s, t, sd) in enumerate(zip(self.samples, self.t, self.sigma)):
            if s is not None and s.size > 1:
                out[:, j] = bootstrap_medians(s, reps, rng) * (t / np.median(s))
            else:
                out[:, j] = np.maximum(t + sd * rng.standard_normal(reps), t * 1e-3)
        return out


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def shape_of(b: Any, d: Any) -> str:
    """``"B8_d512"`` (missing values as -1)."""
    bi = int(b) if _finite(b) else -1
    di = int(d) if _finite(d) else -1
    return f"B{bi}_d{di}"


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v))


def assign_shapes(ok: pd.DataFrame) -> pd.Series:
    """The ``shape`` of every row (see the module docstring): rows of one suite group and one (impl, variant,
    dtype, mode, sparsity, timing) whose (batch, d) changes with N — one shape per N — at a constant element
    count form a constant-work sweep ``"E<elements>"``; every other row gets ``"B<batch>_d<d>"``. A group that sweeps
    two widths at a constant number of tokens holds one sweep per element count; where a group has several element
    counts, a sweep needs three N or more, so that two fixed-batch points that happen to share an element count
    (B 8: d 256 at N 1024 and d 1024 at N 256) are not taken for one."""
    shape = pd.Series([shape_of(b, d) for b, d in zip(ok["batch"], ok["d"])], index=ok.index, dtype=object)
    keys = ["platform", "kind", "impl", "variant", "dtype", "mode", "sparsity", "timing_mode", "group"]
    for _, g in ok.groupby(keys, dropna=False):
        counts = g["elements"].dropna().unique()
        for e in counts:
            ge = g[g["elements"] == e]
            if shape[ge.index].nunique() < 2 or ge["n"].nunique() < (2 if counts.size == 1 else 3):
                continue
            if (pd.DataFrame({"n": ge["n"], "s": shape[ge.index]}).groupby("n")["s"].nunique() == 1).all():
                shape[ge.index] = f"E{int(e)}"
    return shape


def _share_constant_work_points(ok: pd.DataFrame) -> pd.DataFrame:
    """A point of a constant-work sweep whose own (batch, d) is also the fixed shape of another series of the
    same implementation (same variant, dtype, mode, sparsity, timing) is added to that series too: the case is
    measured once (the suite keeps it in one group) but belongs to both curves."""
    ident = ["platform", "kind", "impl", "variant", "dtype", "mode", "sparsity", "timing_mode"]
    const = ok[ok["shape"].str.startswith("E")]
    if const.empty:
        return ok
    fixed = ok[~ok["shape"].str.startswith("E")]
    have = set(map(tuple, fixed[[*ident, "shape"]].astype(str).to_numpy()))
    own = pd.Series([shape_of(b, d) for b, d in zip(const["batch"], const["d"])], index=const.index)
    keep = [tuple(r) + (sh,) in have for r, sh in zip(const[ident].astype(str).to_numpy(), own)]
    extra = const[keep].assign(shape=own[keep])
    return pd.concat([ok, extra]) if len(extra) else ok


def main_timing(df: pd.DataFrame) -> str:
    """The timing mode most ok rows were measured with (``"cold"`` in the default suites)."""
    ok = df[df["time_s"].notna()]
    return str(ok["timing_mode"].mode().iloc[0]) if len(ok) else ""


def build_series(df: pd.DataFrame, facts: dict[str, dict[str, Any]] | None = None) -> list[Series]:
    """Every series of ok, timed rows (``impl == "auto"`` and tuned/default configuration rows excluded: they
    belong to the autotuning section)."""
    ok = df[df["time_s"].notna() & df["n"].notna() & (df["impl"] != "auto") & df["tuning_config"].isna()].copy()
    if ok.empty:
        return []
    ok["shape"] = assign_shapes(ok)
    ok = _share_constant_work_points(ok)
    out = []
    for key, g in ok.groupby(SERIES_KEY, sort=True, dropna=False):
        ns, ts, samples, sigma = [], [], [], []
        for n, gn in g.groupby("n"):
            ns.append(float(n))
            ts.append(float(np.median(gn["time_s"])))
            arrs = [samples_of(r) for _, r in gn.iterrows()]
            samples.append(np.concatenate(arrs) if all(a is not None for a in arrs) else None)
            ci = gn["time_ci95_s"].to_numpy(dtype=float)
            sigma.append(float(np.nanmax(ci) / 1.96) if np.isfinite(ci).any() else 0.0)
        fact = (facts or {}).get(key[2], {})
        out.append(Series(key=tuple(key), ns=np.array(ns), t=np.array(ts), samples=samples, sigma=np.array(sigma),
                          exact=fact.get("exact"),
                          default_like=_default_like(g["options_json"].iloc[0], fact.get("defaults"))))
    _mark_primary(out, main_timing(df))
    return out


def _default_like(options_json: Any, defaults: dict[str, Any] | None) -> bool:
    """True when every stored option equals the implementation's registered default (or none is stored)."""
    opts = parse_json(options_json)
    if not isinstance(opts, dict) or not opts:
        return True
    if not defaults:
        return False
    return all(k in defaults and str(defaults[k]) == str(v) for k, v in opts.items())


def _mark_primary(series: list[Series], timing: str) -> None:
    groups: dict[tuple, list[Series]] = {}
    for s in series:
        if s.sparsity != 0 or s.timing_mode != timing:
            continue
        groups.setdefault((s.platform, s.impl, s.dtype, s.mode, s.shape), []).append(s)
    for members in groups.values():
        best = max(members, key=lambda s: (s.ns.size, s.default_like, s.variant == "", -len(s.variant), s.variant))
        best.primary = True


# -- fits ---------------------------------------------------------------------------------------------------


def fit_range(ns: np.ndarray, t: np.ndarray, min_n: float | None = None,
              max_n: float | None = None) -> np.ndarray:
    """Boolean mask of the points a power law is fitted over.

    With ``min_n`` / ``max_n`` given: exactly the sizes inside [min_n, max_n]. Otherwise (automatic): the
    largest sizes, going down, while the time stays at least ``FLOOR_FACTOR`` (2) times the series' smallest
    time — the flat launch/latency floor at small N is not part of the asymptotic law — and never fewer than
    three points (or all points when the series has fewer).
    """
    ns = np.asarray(ns, dtype=float)
    t = np.asarray(t, dtype=float)
    mask = np.ones(ns.size, dtype=bool)
    if min_n is not None or max_n is not None:
        if min_n is not None:
            mask &= ns >= min_n
        if max_n is not None:
            mask &= ns <= max_n
        return mask
    order = np.argsort(ns)[::-1]
    floor = float(np.min(t))
    keep = np.zeros(ns.size, dtype=bool)
    for i in order:
        if t[i] >= FLOOR_FACTOR * floor:
            keep[i] = True
        else:
            break
    if keep.sum() < 3:
        keep[:] = False
        keep[order[: min(3, ns.size)]] = True
    return keep


def fit_rule_text(min_n: float | None, max_n: float | None) -> str:
    if min_n is not None or max_n is not None:
        lo = f"{min_n:g}" if min_n is not None else "the smallest N"
        hi = f"{max_n:g}" if max_n is not None else "the largest N"
        return f"fit range set by the user: N from {lo} to {hi}"
    return (f"fit range chosen automatically per series: the largest sizes, going down while the time is at least "
            f"{FLOOR_FACTOR:g}x the series' smallest time (below that the launch/latency floor dominates), and at "
            "least three points")


def fit_series(series: list[Series], min_n: float | None = None, max_n: float | None = None) -> pd.DataFrame:
    """Fit every series with at least two sizes in range; returns one table row per series."""
    rows = []
    for s in series:
        if s.ns.size < 2:
            continue
        mask = fit_range(s.ns, s.t, min_n, max_n)
        s.fit_mask = mask
        fit = None
        if np.unique(s.ns[mask]).size >= 2:
            fit = fit_power_law(s.ns[mask], s.t[mask])
        s.fit = fit
        rows.append({
            "platform": s.platform, "kind": s.kind, "impl": s.impl, "variant": s.variant, "dtype": s.dtype,
            "mode": s.mode, "shape": s.shape, "batch": s.batch, "d": s.d, "sparsity": s.sparsity,
            "timing_mode": s.timing_mode,
            "label": s.label, "primary": s.primary, "exact": s.exact, "sizes": s.ns.size,
            "n_lo": fit.n_min if fit else math.nan, "n_hi": fit.n_max if fit else math.nan,
            "points": fit.n_points if fit else 0,
            "alpha": fit.alpha if fit else math.nan,
            "alpha_lo": fit.alpha_lo if fit and fit.n_points > 2 else math.nan,
            "alpha_hi": fit.alpha_hi if fit and fit.n_points > 2 else math.nan,
            "c_s": fit.c if fit else math.nan, "r2": fit.r2 if fit else math.nan,
        })
    cols = ["platform", "kind", "impl", "variant", "dtype", "mode", "shape", "batch", "d", "sparsity",
            "timing_mode", "label", "primary", "exact", "sizes", "n_lo", "n_hi", "points", "alpha", "alpha_lo",
            "alpha_hi", "c_s", "r2"]
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        out["_k"] = out["kind"].map(KIND_ORDER).fillna(9)
        out = out.sort_values(["platform", "shape", "mode", "_k", "impl", "dtype", "variant", "timing_mode"]).drop(
            columns="_k")
    return out.reset_index(drop=True)


# -- crossovers ---------------------------------------------------------------------------------------------


def _crossing(ns: np.ndarray, r: np.ndarray) -> float:
    """N* from log-ratios ``r`` (>0: the BK series is faster) at sizes ``ns``: the last sign change after
    which r stays > 0, interpolated in log-log. -inf: faster everywhere; +inf: not faster at the largest N."""
    if r[-1] <= 0:
        return math.inf
    if np.all(r > 0):
        return -math.inf
    i = int(np.nonzero(r <= 0)[0][-1])
    x0, x1 = math.log(ns[i]), math.log(ns[i + 1])
    frac = r[i] / (r[i] - r[i + 1])
    return math.exp(x0 + frac * (x1 - x0))


def _interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    q = (1 - level) / 2
    v = np.sort(values)
    return float(np.quantile(v, q, method="nearest")), float(np.quantile(v, 1 - q, method="nearest"))


@dataclass
class Crossover:
    """N* of one (BK series, baseline series) pair. ``state``: "cross" (N* inside the measured sizes),
    "faster" (BK faster at every common size), "slower" (BK not faster at the largest common size),
    "none" (fewer than two common sizes)."""

    bk: Series
    base: Series
    state: str
    n_star: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    common: np.ndarray = field(default_factory=lambda: np.array([]))
    boot_agree: float = math.nan  # fraction of bootstrap replicates in the same state
    fit_n_star: float = math.nan
    fit_lo: float = math.nan
    fit_hi: float = math.nan
    fit_note: str = ""
    base_oom_n: float = math.nan

    def text(self) -> str:
        """Short human form, e.g. ``"2.1k (1.9k–2.4k)"``, ``"< 256 (faster at all sizes)"``."""
        if self.state == "none":
            return "fewer than two sizes measured by both"
        shaky = (f" [holds in {100 * self.boot_agree:.0f} % of resamples]"
                 if np.isfinite(self.boot_agree) and self.boot_agree < 0.95 else "")
        if self.state == "faster":
            return f"< {fmt_n(self.common[0])} (BK faster at every size measured){shaky}"
        if self.state == "slower":
            return f"> {fmt_n(self.common[-1])} (BK not faster at the largest common size){shaky}"
        return (f"{fmt_n(self.n_star)} ({fmt_n_bound(self.lo, self.common)}–{fmt_n_bound(self.hi, self.common)})"
                f"{shaky}")

    def fit_text(self) -> str:
        if not np.isfinite(self.fit_n_star):
            return self.fit_note or "—"
        return f"{fmt_n(self.fit_n_star)} ({fmt_n(self.fit_lo)}–{fmt_n(self.fit_hi)}); {self.fit_note}"


def crossover(bk: Series, base: Series, reps: int = DEFAULT_REPS, seed: int = 0) -> Crossover:
    """N* where ``bk`` overtakes ``base`` (both on one platform and mode), with bootstrap and fit intervals."""
    common = np.intersect1d(bk.ns, base.ns)
    c = Crossover(bk=bk, base=base, state="none", common=common)
    rng = np.random.default_rng(seed)
    if common.size >= 2:
        ib = np.searchsorted(bk.ns, common)
        ia = np.searchsorted(base.ns, common)
        r = np.log(base.t[ia]) - np.log(bk.t[ib])
        n_star = _crossing(common, r)
        c.state = "cross" if np.isfinite(n_star) else ("faster" if n_star < 0 else "slower")
        c.n_star = n_star
        bb = bk.boot(reps, seed)[:, ib]
        ba = base.boot(reps, seed)[:, ia]
        rr = np.log(ba) - np.log(bb)
        stars = np.array([_crossing(common, row) for row in rr])
        same = {"cross": np.isfinite(stars), "faster": stars == -np.inf, "slower": stars == np.inf}[c.state]
        c.boot_agree = float(same.mean())
        c.lo, c.hi = _interval(stars)
    elif common.size == 1:
        c.state = "none"
    # from the fits (may extrapolate beyond the measured sizes)
    if c.state == "faster":
        c.fit_note = "not needed: BK faster over the whole measured range"
    elif bk.fit is not None and base.fit is not None:
        da = base.fit.alpha - bk.fit.alpha
        if da <= 0:
            c.fit_note = "fits never cross in BK's favour (BK exponent ≥ baseline's)"
        else:
            # nearly parallel fits put the crossing astronomically far away: exp() would overflow
            c.fit_n_star = math.exp(min((bk.fit.log_c - base.fit.log_c) / da, 700.0))
            lc1, a1 = sample_fit_params(bk.fit, 4000, rng)
            lc2, a2 = sample_fit_params(base.fit, 4000, rng)
            den = a2 - a1
            good = den > 0
            vals = np.exp(np.clip((lc1[good] - lc2[good]) / den[good], -700, 700))
            c.fit_lo, c.fit_hi = _interval(vals) if vals.size else (math.nan, math.nan)
            lo_n, hi_n = max(bk.fit.n_min, base.fit.n_min), min(bk.fit.n_max, base.fit.n_max)
            notes = ["within the fitted ranges" if lo_n <= c.fit_n_star <= hi_n else "extrapolated"]
            if good.mean() < 0.975:
                notes.append(f"{100 * (1 - good.mean()):.0f} % of parameter draws never cross")
                c.fit_hi = math.inf
            c.fit_note = ", ".join(notes)
    return c


def crossovers(series: list[Series], reps: int = DEFAULT_REPS, oom: pd.DataFrame | None = None) -> list[Crossover]:
    """Every (primary BK series, primary baseline series) pair on the same platform, mode, batch and d."""
    out = []
    prim = [s for s in series if s.primary and s.ns.size >= 2]
    for bk in (s for s in prim if s.kind == "bk"):
        for base in (s for s in prim if s.kind in BASELINE_KINDS):
            if (bk.platform, bk.mode, bk.shape, bk.timing_mode) != (
                    base.platform, base.mode, base.shape, base.timing_mode):
                continue
            c = crossover(bk, base, reps=reps)
            if oom is not None and len(oom):
                hit = oom[(oom["platform"] == base.platform) & (oom["impl"] == base.impl) & (oom["mode"] == base.mode)
                          & (oom["dtype"] == base.dtype) & (oom["shape"] == base.shape)]
                if len(hit):
                    c.base_oom_n = float(hit["first_oom_n"].min())
            out.append(c)
    return out


def crossover_table(cs: list[Crossover]) -> pd.DataFrame:
    rows = []
    for c in cs:
        rows.append({
            "platform": c.bk.platform, "mode": c.bk.mode, "shape": c.bk.shape,
            "bk": c.bk.label, "baseline": c.base.label, "baseline_kind": c.base.kind, "state": c.state,
            "n_star": c.n_star, "n_star_lo": c.lo, "n_star_hi": c.hi, "boot_agree": c.boot_agree,
            "fit_n_star": c.fit_n_star, "fit_lo": c.fit_lo, "fit_hi": c.fit_hi, "fit_note": c.fit_note.strip(),
            "common_n_min": c.common[0] if c.common.size else math.nan,
            "common_n_max": c.common[-1] if c.common.size else math.nan,
            "baseline_first_oom_n": c.base_oom_n, "text": c.text(), "fit_text": c.fit_text(),
        })
    return pd.DataFrame(rows)


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


def shape_text(shape: str) -> str:
    """``"B8_d512"`` -> ``"B=8, d=512"``; ``"E16777216"`` -> constant-work description."""
    m = re.fullmatch(r"B(-?\d+)_d(-?\d+)", shape or "")
    if m:
        parts = [f"B={m.group(1)}" if m.group(1) != "-1" else "", f"d={m.group(2)}" if m.group(2) != "-1" else ""]
        return ", ".join(p for p in parts if p) or "shape not recorded"
    m = re.fullmatch(r"E(\d+)", shape or "")
    if m:
        return f"constant work B·d·N = {fmt_n(float(m.group(1)))} elements (B·d shrinks as N grows)"
    return shape or "shape not recorded"


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
            v = _num(ej.get(k))
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
    shape = max(counts, key=lambda k: (counts[k], k[1] == "fwd", _num(k[2])))
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


# -- autotuning ---------------------------------------------------------------------------------------------------

TUNED_KEYS = ("tuned_s", "tuned_time_s", "time_tuned_s", "best_s", "best_time_s")
DEFAULT_KEYS = ("default_s", "default_time_s", "time_default_s")
# bkbench.tuning entries: {"ms": tuned, "default_ms": default, "bwd_ms": ..., "bwd_default_ms": ...} (milliseconds)
MS_PAIRS = (("ms", "default_ms", "fwd"), ("bwd_ms", "bwd_default_ms", "bwd"))


def _walk(obj: Any, path: tuple = ()) -> list[tuple[tuple, dict]]:
    out = []
    if isinstance(obj, dict):
        out.append((path, obj))
        for k, v in obj.items():
            out.extend(_walk(v, (*path, str(k))))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_walk(v, (*path, str(i))))
    return out


def tuning_from_json(docs: list[tuple[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tuned-vs-default records and dispatch entries found in tuning JSON documents ``[(source, obj)]``.

    A tuning record is any JSON object holding a tuned time (one of ``TUNED_KEYS``) and a default time (one of
    ``DEFAULT_KEYS``), in seconds, or — the :mod:`bkbench.tuning` cache format — ``ms``/``default_ms`` (forward)
    and ``bwd_ms``/``bwd_default_ms`` (backward) in milliseconds; its bucket is its ``bucket``/``shape``/``key``
    field or its key in the document (``"GPU|dtype|coupling|bucket"`` keys are split into those fields).
    A dispatch entry is any object with an implementation (``impl`` or one of ``AUTO_KEYS``) and
    both ``n``/``N`` and ``batch``/``B``."""
    tune, disp = [], []
    for source, doc in docs:
        for path, d in _walk(doc):
            tk = next((k for k in TUNED_KEYS if k in d), None)
            dk = next((k for k in DEFAULT_KEYS if k in d), None)
            pairs = [(tk, dk, "", 1.0)] if tk and dk else []
            pairs += [(a, b, m, 1e-3) for a, b, m in MS_PAIRS if a in d and b in d]
            key = str(d.get("bucket", d.get("shape", d.get("key", path[-1] if path else "(root)"))))
            parts = key.split("|")  # bkbench.tuning keys: "GPU|dtype|coupling|bucket"
            for t_key, d_key, mode, scale in pairs:
                t_val, d_val = _num(d[t_key]) * scale, _num(d[d_key]) * scale
                if not (t_val > 0 and d_val > 0 and math.isfinite(t_val) and math.isfinite(d_val)):
                    continue
                cfg = d.get("bwd_config" if mode == "bwd" else "config", d.get("tuned_config", ""))
                tune.append({"source": source, "impl": d.get("impl", "triton_fused" if scale != 1.0 else ""),
                             "gpu": parts[0] if len(parts) == 4 else "", "bucket": parts[-1],
                             "coupling": parts[2] if len(parts) == 4 else "",
                             "dtype": d.get("dtype", parts[1] if len(parts) == 4 else ""), "mode": mode,
                             "default_s": d_val, "tuned_s": t_val,
                             "config": json.dumps(cfg, sort_keys=True) if isinstance(cfg, dict) else str(cfg),
                             "speedup": d_val / t_val})
            impl = next((d[k] for k in ("impl", *AUTO_KEYS) if isinstance(d.get(k), str)), None)
            n = d.get("n", d.get("N"))
            b = d.get("batch", d.get("B"))
            if impl and n is not None and b is not None and not pairs:
                disp.append({"source": source, "n": _num(n), "batch": _num(b), "impl": impl,
                             "dtype": d.get("dtype", ""), "reason": str(d.get("reason", ""))})
    return pd.DataFrame(tune), pd.DataFrame(disp)


def tuning(df: pd.DataFrame, docs: list[tuple[str, Any]] | None = None,
           facts: dict[str, dict[str, Any]] | None = None) -> dict[str, pd.DataFrame]:
    """Autotuning data from the store and from tuning JSON documents.

    Store conventions read here: rows whose options carry ``"config": "default"`` / ``"config": "tuned"``
    (the same case otherwise) give a tuned-vs-default speedup; rows with ``impl == "auto"`` whose metrics name
    the implementation auto dispatched to (``auto_impl`` and synonyms) give the dispatch map. ``measured``
    is the fastest exact BK-core implementation per (platform, dtype, mode, N, batch) among the benchmark rows
    (what a data-driven ``impl="auto"`` should pick); implementations the registry (``facts``) marks as
    approximate are left out of it."""
    speed = []
    ok = df[df["time_s"].notna()].copy()
    opts = ok["options_json"].map(parse_json)
    ok["_cfg"] = ok["tuning_config"]
    ok["_rest"] = opts.map(lambda o: str(sorted((k, str(v)) for k, v in o.items() if k != "config"))
                           if isinstance(o, dict) else "[]")
    tuned_rows = ok[ok["_cfg"].isin(["default", "tuned"])]
    keys = ["platform", "impl", "dtype", "mode", "n", "batch", "d", "sparsity", "_rest"]
    for key, g in tuned_rows.groupby(keys, dropna=False):
        per = g.groupby("_cfg")["time_s"].median()
        if "default" in per and "tuned" in per:
            speed.append(dict(zip(keys[:-1], key[:-1])) | {"source": "store", "default_s": per["default"],
                                                          "tuned_s": per["tuned"],
                                                          "speedup": per["default"] / per["tuned"]})
    store_speed = pd.DataFrame(speed)
    json_speed, json_disp = tuning_from_json(docs or [])
    auto = df[(df["impl"] == "auto")].copy()
    disp = []
    for _, r in auto.iterrows():
        m = parse_json(r["metrics_json"]) or {}
        chosen = next((m[k] for k in AUTO_KEYS if isinstance(m.get(k), str)), None)
        disp.append({"source": "store", "platform": r["platform"], "dtype": r["dtype"], "mode": r["mode"],
                     "n": r["n"], "batch": r["batch"], "impl": chosen or "(not recorded)",
                     "status": r["status"], "time_s": r["time_s"]})
    store_disp = pd.DataFrame(disp)
    # fastest measured exact BK implementation per (platform, dtype, mode, n, batch)
    approx = {name for name, f in (facts or {}).items() if f.get("exact") is False}
    bk = ok[(ok["kind"] == "bk") & (ok["sparsity"] == 0) & (ok["impl"] != "auto") & ok["_cfg"].isna()
            & ~ok["impl"].isin(approx)]
    measured = []
    for key, g in bk.groupby(["platform", "dtype", "mode", "n", "batch"], dropna=False):
        best = g.loc[g["time_s"].idxmin()]
        measured.append(dict(zip(["platform", "dtype", "mode", "n", "batch"], key)) | {
            "impl": best["impl"], "variant": best["variant"], "time_s": best["time_s"],
            "candidates": g["impl"].nunique()})
    return {"speedup_store": store_speed, "speedup_json": json_speed, "dispatch_store": store_disp,
            "dispatch_json": json_disp, "measured_best": pd.DataFrame(measured)}


# -- two-run comparison ---------------------------------------------------------------------------------------


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
            lo, hi = _interval(mb / ma)
            p = mann_whitney_p(sa, sb)
            method = "raw samples"
        else:
            sd = math.hypot(_num(ra["time_ci95_s"]) / 1.96 / ta, _num(rb["time_ci95_s"]) / 1.96 / tb)
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


# -- failures -----------------------------------------------------------------------------------------------------


def failures(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every row whose status is not ok, with its reason; counts per impl × status)."""
    bad = df[df["status"] != "ok"].copy()
    order = {"crash": 0, "timeout": 1, "incorrect": 2, "oom": 3, "skipped": 4}
    bad["_o"] = bad["status"].map(order).fillna(9)
    bad = bad.sort_values(["_o", "impl", "variant", "mode", "n"]).drop(columns="_o").reset_index(drop=True)
    counts = (df.groupby(["impl", "status"]).size().unstack(fill_value=0) if len(df) else pd.DataFrame())
    return bad, counts


# -- formatting helpers shared with render/plots -----------------------------------------------------------------


def fmt_n(n: float) -> str:
    """Sizes: 256, 4096 -> "4k" (binary k for powers of two), 1.2e5 -> "120k", inf -> "∞"."""
    if n is None or not np.isfinite(n):
        return "∞" if n == math.inf else ("—" if n is None or np.isnan(n) else "-∞")
    n = float(n)
    if n < 1000:
        return f"{n:.3g}"
    if n >= 1e12:
        return f"{n:.2g}"
    for scale, unit in ((1 << 30, "Gi"), (1 << 20, "Mi"), (1 << 10, "k")):
        if n >= scale and (n / scale).is_integer() and (n / scale) >= 1:
            return f"{int(n / scale)}{unit}"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def fmt_n_bound(v: float, common: np.ndarray) -> str:
    if v == -math.inf:
        return f"<{fmt_n(common[0])}"
    if v == math.inf:
        return f">{fmt_n(common[-1])}"
    return fmt_n(v)


def fmt_time(t: float) -> str:
    """Seconds -> "12.3 µs", "4.56 ms", "1.2 s"."""
    if t is None or not np.isfinite(t):
        return "—"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if abs(t) >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


# -- everything ---------------------------------------------------------------------------------------------------


@dataclass
class Analysis:
    """All computed sections of one report (see the module docstring)."""

    loaded: Loaded
    series: list[Series]
    fits: pd.DataFrame
    fit_rule: str
    slices: list[tuple]
    crossovers: list[Crossover]
    crossover_df: pd.DataFrame
    oom: pd.DataFrame
    headline: list[dict[str, Any]]
    roofline: pd.DataFrame
    energy: pd.DataFrame
    energy_missing: pd.DataFrame
    pareto: dict[str, Any]
    sparsity: pd.DataFrame
    tuning: dict[str, pd.DataFrame]
    failures: pd.DataFrame
    status_counts: pd.DataFrame
    comparison: dict[str, Any] | None = None
    compare_runs: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    reps: int = DEFAULT_REPS


def analyze(loaded: Loaded, *, fit_min_n: float | None = None, fit_max_n: float | None = None,
            reps: int = DEFAULT_REPS, tuning_docs: list[tuple[str, Any]] | None = None,
            compare: tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]] | None = None,
            use_registry: bool = True) -> Analysis:
    """Run every analysis on ``loaded``; ``compare`` = (rows of run A, rows of run B, the two run records)."""
    df = loaded.df
    facts = implementation_facts() if use_registry else {}
    series = build_series(df, facts)
    fits = fit_series(series, fit_min_n, fit_max_n)
    oom = oom_table(df)
    cs = crossovers(series, reps=reps, oom=oom)
    slices = main_slices(series)
    fail, counts = failures(df)
    energy, energy_missing = energy_table(df)
    comp = compare_runs(compare[0], compare[1]) if compare is not None else None
    comp_runs = compare[2] if compare is not None else []
    return Analysis(
        loaded=loaded, series=series, fits=fits, fit_rule=fit_rule_text(fit_min_n, fit_max_n), slices=slices,
        crossovers=cs, crossover_df=with_gaps(crossover_table(cs), df, series), oom=oom,
        headline=headline(series, cs, slices),
        roofline=roofline_table(df), energy=energy, energy_missing=energy_missing, pareto=pareto(df),
        sparsity=sparsity_table(df), tuning=tuning(df, tuning_docs, facts), failures=fail, status_counts=counts,
        comparison=comp, compare_runs=comp_runs, facts=facts, reps=reps,
    )
