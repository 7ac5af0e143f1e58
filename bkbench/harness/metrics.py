"""Metrics as small plug-in functions.

A metric is a function ``(ctx: MetricContext) -> dict[str, value]`` registered with :func:`metric`; the
runner calls :func:`compute` once per case and stores the union of the dicts (keys that are columns of
``bkbench.store.RESULT_COLUMNS`` land in their column, the others in ``metrics_json``). A metric whose
inputs are missing returns ``{}`` — it never invents a value. Adding a metric is adding a function::

    @metric("elements_per_s")
    def elements_per_s(ctx):
        return {"elements_per_s": ctx.model.elements / ctx.timing.median} if ctx.timing else {}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bkbench.harness.energy import EnergyResult
from bkbench.harness.memory import MemoryResult
from bkbench.harness.plausibility import cache_bytes, floor_seconds, implausible, slack_for
from bkbench.harness.timing import Timing


@dataclass(frozen=True)
class WorkModel:
    """Analytic model of one call. ideal_bytes: compulsory bytes moved (read + written once); flops: useful
    floating-point operations; elements: B*N (chains x length, or tokens x channels); tokens: B*N tokens;
    peak_bytes: the implementation's modelled peak memory, if it has one; note: the convention used."""

    ideal_bytes: float
    flops: float
    elements: int
    tokens: int
    peak_bytes: float | None = None
    note: str = ""


@dataclass(frozen=True)
class CheckResult:
    """Correctness of a case before timing. scope says what was compared (e.g. "32 of 4096 chains")."""

    passed: bool
    rel_err: float | None
    tolerance: float | None
    detail: str = ""
    scope: str = ""


@dataclass
class MetricContext:
    timing: Timing | None = None
    model: WorkModel | None = None
    copy_bandwidth_gbs: float | None = None
    memory: MemoryResult | None = None
    energy: EnergyResult | None = None
    check: CheckResult | None = None
    device: str = "cpu"


MetricFn = Callable[[MetricContext], dict[str, Any]]
_METRICS: dict[str, MetricFn] = {}


def metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn`` as metric ``name`` (a later registration under the same name replaces it)."""

    def decorate(fn: MetricFn) -> MetricFn:
        _METRICS[name] = fn
        return fn

    return decorate


def names() -> list[str]:
    return list(_METRICS)


def compute(ctx: MetricContext, only: Iterable[str] | None = None) -> dict[str, Any]:
    """Run every registered metric (or those in ``only``) on ``ctx`` and merge their columns."""
    out: dict[str, Any] = {}
    for name in list(only) if only is not None else list(_METRICS):
        if name not in _METRICS:
            raise ValueError(f"metric: unknown metric {name!r}; known: {', '.join(_METRICS)}")
        out.update(_METRICS[name](ctx))
    return out


@metric("accuracy")
def accuracy(ctx: MetricContext) -> dict[str, Any]:
    c = ctx.check
    if c is None:
        return {}
    return {"rel_err": c.rel_err, "tolerance": c.tolerance, "check_scope": c.scope, "check_detail": c.detail}


@metric("latency")
def latency(ctx: MetricContext) -> dict[str, Any]:
    t = ctx.timing
    if t is None:
        return {}
    s = t.stats
    return {
        "timing_mode": t.mode,
        "time_median_s": s.median,
        "time_p20_s": s.p20,
        "time_p80_s": s.p80,
        "time_iqr_s": s.iqr,
        "time_mean_s": s.mean,
        "time_std_s": s.std,
        "time_ci95_s": s.ci95,
        "n_samples": s.n,
        "samples_json": json.dumps([float(f"{x:.6g}") for x in t.samples]),
        "timing_converged": t.converged,
        "timing_stop": t.stop,
        "timing_unroll": t.unroll,
        "warmup_calls": t.warmup_calls,
        "host_s_per_call": t.host_s,
        "host_bound": t.host_bound,
        "flush_s": t.flush_s,
    }


@metric("throughput")
def throughput(ctx: MetricContext) -> dict[str, Any]:
    """Achieved GB/s from the ideal-bytes model and % of the measured copy bandwidth (the roofline)."""
    t, m = ctx.timing, ctx.model
    if t is None or m is None or t.median <= 0:
        return {}
    out: dict[str, Any] = {"ideal_bytes": int(m.ideal_bytes), "flops": m.flops}
    if m.ideal_bytes:
        gbps = m.ideal_bytes / t.median / 1e9
        out["gbps"] = gbps
        if ctx.copy_bandwidth_gbs:
            out["roofline_pct"] = 100.0 * gbps / ctx.copy_bandwidth_gbs
    if m.flops:
        out["tflops"] = m.flops / t.median / 1e12
    if m.elements:
        out["elements_per_s"] = m.elements / t.median
        out["ns_per_element"] = t.median / m.elements * 1e9
    if m.tokens:
        out["tokens_per_s"] = m.tokens / t.median
    return out


@metric("plausibility")
def plausibility(ctx: MetricContext) -> dict[str, Any]:
    """The physical floor of the call (ideal bytes / measured copy bandwidth) and the slack it is judged with
    (bkbench/harness/plausibility.py); :func:`row_status` turns a time below it into status ``implausible``."""
    t, m = ctx.timing, ctx.model
    floor = floor_seconds(m.ideal_bytes if m else None, ctx.copy_bandwidth_gbs)
    if t is None or m is None or floor is None:
        return {}
    return {"floor_s": floor, "floor_slack": slack_for(t.mode, m.ideal_bytes, cache_bytes(ctx.device))}


def row_status(ctx: MetricContext) -> dict[str, Any]:
    """``status`` and ``reason`` of a case that passed its check and was timed: ``ok``, or ``implausible`` when its
    median time is below the physical floor (bkbench/harness/plausibility.py) -- such a time is never a result."""
    t, m = ctx.timing, ctx.model
    if t is not None and m is not None:
        slack = slack_for(t.mode, m.ideal_bytes, cache_bytes(ctx.device))
        reason = implausible(t.median, m.ideal_bytes, ctx.copy_bandwidth_gbs, slack)
        if reason:
            return {"status": "implausible", "reason": reason}
    return {"status": "ok", "reason": None}


@metric("memory")
def memory(ctx: MetricContext) -> dict[str, Any]:
    mem, m = ctx.memory, ctx.model
    if mem is None:
        return {}
    out: dict[str, Any] = {"memory_status": mem.status}
    if mem.peak_bytes is not None:
        out["peak_mem_bytes"] = mem.peak_bytes
        out["peak_extra_bytes"] = mem.extra_bytes
    if m is not None and m.peak_bytes is not None:
        out["model_peak_bytes"] = m.peak_bytes
    return out


@metric("energy")
def energy(ctx: MetricContext) -> dict[str, Any]:
    e = ctx.energy
    if e is None:
        return {}
    out = e.columns()
    if e.status == "ok" and ctx.model is not None and ctx.model.tokens and e.j_per_call is not None:
        out["energy_j_per_token"] = e.j_per_call / ctx.model.tokens
    return out
