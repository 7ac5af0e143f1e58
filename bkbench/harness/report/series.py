"""The scaling series of a report: the ok, timed rows grouped into curves of time against N.

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
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bkbench.harness.report.fields import parse_json, samples_of
from bkbench.harness.report.formatting import short_dtype
from bkbench.harness.report.stats import PowerLawFit, bootstrap_medians

KIND_ORDER = {"bk": 0, "ssm": 1, "attention": 2}
BASELINE_KINDS = ("ssm", "attention")
SERIES_KEY = ["platform", "kind", "impl", "variant", "dtype", "mode", "shape", "sparsity", "timing_mode"]


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
