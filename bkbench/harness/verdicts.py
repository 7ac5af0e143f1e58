"""FAST / SLOW / SAME / AMBIGUOUS: the verdict of a paired base-vs-head timing, with a confidence interval.

Input: the per-round ratios r_i = stat(head block) / stat(base block) of interleaved rounds
(bkbench/harness/premerge.py). The point estimate is their median; its 95 % confidence interval is distribution-free:
the order statistics r_(k) and r_(n+1-k), with k the largest rank such that P(Binomial(n, 1/2) < k) <= 2.5 % (the
sign-test interval of a median; with 15 rounds the 4th and 12th smallest ratios, 96.5 % coverage). It assumes only that
the rounds are independent with a common median, not that the noise is normal -- on a shared machine it is not (bursts
of load hit a few rounds).

With ``threshold`` t the band of "no practical change" is [1 / (1 + t), 1 + t]:

``SLOW``       the whole interval lies above 1 + t: slower than the band allows, with 95 % confidence;
``FAST``       the whole interval lies below 1 / (1 + t);
``SAME``       the whole interval lies inside the band;
``AMBIGUOUS``  the interval reaches across an edge of the band: the rounds cannot tell (more rounds, longer
               blocks or a quieter machine can). Premerge runs more rounds before it settles for this.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

VERDICTS = ("fast", "slow", "same", "ambiguous")
CONFIDENCE = 0.95


def median_rank_interval(n: int, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """1-based ranks (k, n + 1 - k) of the distribution-free ``confidence`` interval of the median of ``n``
    samples (sign test: the largest k with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2; at least 1, so
    with very few samples the interval is the whole range)."""
    if n < 1:
        raise ValueError(f"n: need at least one sample, got {n}")
    alpha = (1.0 - confidence) / 2.0
    cdf, k = 0.0, 0
    while k < n:
        p = math.comb(n, k) / 2.0**n  # P(X = k)
        if cdf + p > alpha:
            break
        cdf += p
        k += 1
    k = max(k, 1)  # P(X < k) <= alpha  <=>  X <= k - 1
    return k, n + 1 - k


def coverage(n: int, k: int) -> float:
    """Coverage of the order-statistics interval (r_(k), r_(n+1-k)) of the median of n samples."""
    return 1.0 - 2.0 * sum(math.comb(n, j) for j in range(k)) / 2.0**n


@dataclass(frozen=True)
class Verdict:
    status: str  # one of VERDICTS
    ratio: float  # median of the paired ratios (head / base)
    low: float  # confidence interval of that median
    high: float
    coverage: float  # actual coverage of the order-statistics interval (>= the requested confidence when n >= 6)
    detail: str


def judge(ratios: Sequence[float], threshold: float) -> Verdict:
    """The verdict of the paired ratios ``ratios`` (head / base per round) against the band of ``threshold``."""
    if not ratios:
        raise ValueError("ratios: need at least one round")
    if not threshold > 0:
        raise ValueError(f"threshold: must be > 0, got {threshold}")
    r = sorted(float(x) for x in ratios)
    n = len(r)
    k, j = median_rank_interval(n)
    lo, hi, med = r[k - 1], r[j - 1], statistics.median(r)
    up, down = 1.0 + threshold, 1.0 / (1.0 + threshold)
    ci = f"95 % CI {lo:.3f}..{hi:.3f}"
    if lo > up:
        status, detail = "slow", f"{med:.2f}x slower than base ({ci}, all above the {up:.2f}x band)"
    elif hi < down:
        status, detail = "fast", f"{1 / med:.2f}x faster than base ({ci}, all below the {down:.2f}x band)"
    elif down <= lo and hi <= up:
        status, detail = "same", f"no change beyond the {down:.2f}..{up:.2f}x band ({ci})"
    else:
        status, detail = "ambiguous", (f"ratio {med:.3f} but the {ci} crosses the {down:.2f}..{up:.2f}x band: "
                                       "cannot tell (more --rounds, longer --block-seconds or a quieter machine)")
    return Verdict(status, med, lo, hi, coverage(n, k), detail)
