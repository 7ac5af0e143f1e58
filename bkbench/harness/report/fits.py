"""Power-law fits of the scaling series and the crossovers between BK-core and baseline series.

Definitions
-----------
*Fit*: ordinary least squares of log t on log N over the fit range (see :func:`fit_range`); 95 % CI of the
exponent from Student's t with P - 2 degrees of freedom.
*Crossover N\\**: where a BK-core series becomes and stays faster than a baseline series. Measured: the last
sign change of log(t_baseline / t_bk) over the sizes both ran, interpolated linearly in log-log; its 95 %
interval from a bootstrap over the raw timing samples of every point (``samples_json``; where a row has no
samples, a normal approximation from ``time_ci95_s``). From fits: c_bk N^a_bk = c_base N^a_base solved for N,
its interval from draws of both fits' parameters — an extrapolation when it lies outside the measured sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bkbench.harness.report.formatting import fmt_n, fmt_n_bound
from bkbench.harness.report.series import BASELINE_KINDS, KIND_ORDER, Series
from bkbench.harness.report.stats import fit_power_law, interval, sample_fit_params

FLOOR_FACTOR = 2.0
DEFAULT_REPS = 1000


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
        c.lo, c.hi = interval(stars)
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
            c.fit_lo, c.fit_hi = interval(vals) if vals.size else (math.nan, math.nan)
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
