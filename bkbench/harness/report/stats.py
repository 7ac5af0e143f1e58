"""Small, dependency-free statistics for the report: Student-t quantiles, power-law fits in log-log space,
bootstrap of medians and intervals of bootstrap replicates, the Mann–Whitney U test, and Benjamini–Hochberg
adjustment.

Everything here works on plain numpy arrays (float64) and raises ``ValueError`` on unusable input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# -- Student-t distribution -------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x: must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df: degrees of freedom must be > 0, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t distribution (bisection on :func:`t_cdf`, |error| < 1e-10)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q: quantile level must lie in (0, 1), got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def norm_sf(z: float) -> float:
    """Upper tail of the standard normal distribution."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# -- power-law fit --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLawFit:
    """t = c · N^alpha, fitted by ordinary least squares of log t on log N.

    Attributes:
        alpha: fitted exponent; alpha_lo / alpha_hi: its two-sided ``level`` confidence interval
            (Student t with ``n_points - 2`` degrees of freedom; equal to alpha when n_points == 2).
        c: prefactor in the unit of t (seconds for times).
        log_c: natural log of c; cov: 2x2 covariance of (log_c, alpha).
        n_min / n_max: the fit range (smallest and largest N used); n_points: points used.
        r2: coefficient of determination in log space; resid_sd: residual standard deviation (log units).
    """

    alpha: float
    alpha_lo: float
    alpha_hi: float
    c: float
    log_c: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    n_min: float
    n_max: float
    n_points: int
    r2: float
    resid_sd: float
    level: float = 0.95

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """Fitted t at size(s) ``n``."""
        return self.c * np.power(np.asarray(n, dtype=float), self.alpha)


def fit_power_law(n: np.ndarray, t: np.ndarray, level: float = 0.95) -> PowerLawFit:
    """Least-squares fit of log t = log c + alpha log N.

    Args:
        n: sizes, shape (P,), positive; at least two distinct values.
        t: times (or any positive quantity), shape (P,), positive and finite.
        level: confidence level of the interval for alpha.
    """
    n = np.asarray(n, dtype=float).ravel()
    t = np.asarray(t, dtype=float).ravel()
    if n.shape != t.shape:
        raise ValueError(f"n, t: shapes differ ({n.shape} vs {t.shape}); pass one time per size")
    ok = np.isfinite(n) & np.isfinite(t) & (n > 0) & (t > 0)
    n, t = n[ok], t[ok]
    if np.unique(n).size < 2:
        raise ValueError("n: a power-law fit needs positive times at two or more distinct sizes")
    x, y = np.log(n), np.log(t)
    p = x.size
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    alpha = float(((x - xm) * (y - ym)).sum() / sxx)
    log_c = float(ym - alpha * xm)
    resid = y - (log_c + alpha * x)
    sse = float((resid**2).sum())
    sst = float(((y - ym) ** 2).sum())
    dof = p - 2
    if dof > 0:
        s2 = sse / dof
        se_alpha = math.sqrt(s2 / sxx)
        tq = t_ppf(0.5 + level / 2.0, dof)
        half = tq * se_alpha
        var_a = s2 / sxx
        var_c = s2 * (1.0 / p + xm * xm / sxx)
        cov_ac = -xm * s2 / sxx
    else:
        half, var_a, var_c, cov_ac, s2 = 0.0, 0.0, 0.0, 0.0, 0.0
    return PowerLawFit(
        alpha=alpha,
        alpha_lo=alpha - half,
        alpha_hi=alpha + half,
        c=math.exp(log_c),
        log_c=log_c,
        cov=((var_c, cov_ac), (cov_ac, var_a)),
        n_min=float(n.min()),
        n_max=float(n.max()),
        n_points=int(p),
        r2=1.0 - sse / sst if sst > 0 else 1.0,
        resid_sd=math.sqrt(s2),
        level=level,
    )


def sample_fit_params(fit: PowerLawFit, draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draws of (log_c, alpha) from the fit's sampling distribution (multivariate t with n-2 dof).

    Returns two arrays of shape (draws,). With fewer than three points the fit has no spread and the draws
    equal the estimate.
    """
    dof = fit.n_points - 2
    mean = np.array([fit.log_c, fit.alpha])
    if dof <= 0:
        return np.full(draws, fit.log_c), np.full(draws, fit.alpha)
    cov = np.array(fit.cov)
    z = rng.multivariate_normal(np.zeros(2), cov, size=draws, method="svd")
    scale = np.sqrt(dof / rng.chisquare(dof, size=draws))[:, None]
    out = mean + z * scale
    return out[:, 0], out[:, 1]


# -- bootstrap and tests on raw samples --------------------------------------------------------------------


LARGE_SAMPLE = 400


def bootstrap_medians(samples: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``reps`` resamples (with replacement) of ``samples`` (shape (S,)) -> shape (reps,).

    Up to ``LARGE_SAMPLE`` samples the resamples are drawn explicitly. Beyond, the resampled median is drawn
    through its rank: the number of resampled values <= the j-th smallest sample is Binomial(S, j/S), so the
    resampled median is the order statistic of rank ~ S/2 + (sqrt(S)/2) Z, Z standard normal (exact in the
    large-S limit; one sort instead of reps x S draws — the runner keeps up to 10 000 samples per case)."""
    s = np.asarray(samples, dtype=float).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("samples: no finite values to bootstrap")
    if s.size == 1:
        return np.full(reps, s[0])
    if s.size > LARGE_SAMPLE:
        srt = np.sort(s)
        n = srt.size
        pos = (n - 1) / 2.0 + 0.5 * math.sqrt(n) * rng.standard_normal(reps)
        pos = np.clip(pos, 0.0, n - 1.0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return srt[lo] + (pos - lo) * (srt[hi] - srt[lo])
    idx = rng.integers(0, s.size, size=(reps, s.size))
    return np.median(s[idx], axis=1)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of ``values`` (bootstrap replicates): nearest-rank quantiles."""
    q = (1 - level) / 2
    v = np.sort(values)
    return float(np.quantile(v, q, method="nearest")), float(np.quantile(v, 1 - q, method="nearest"))


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of the Mann–Whitney U test (normal approximation with tie correction).

    x, y: 1-D samples (at least one value each). Returns 1.0 when all values are tied.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        raise ValueError("x, y: the Mann-Whitney test needs at least one finite sample on each side")
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    sorted_v = allv[order]
    i = 0
    tie_term = 0.0
    while i < allv.size:
        j = i
        while j + 1 < allv.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        cnt = j - i + 1
        tie_term += cnt**3 - cnt
        i = j + 1
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    nn = n1 + n2
    var = n1 * n2 / 12.0 * ((nn + 1) - tie_term / (nn * (nn - 1))) if nn > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)  # continuity correction
    return float(min(1.0, 2.0 * norm_sf(max(z, 0.0))))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false-discovery rate), same shape as ``p``; NaN stays NaN."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    vals = p[ok]
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals)
    adj = vals[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(adj[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out
