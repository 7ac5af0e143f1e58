"""Anti-cheat checks of the gate: what an accuracy battery cannot see.

A kernel can return the right numbers and still cheat the measurement (peer harnesses met each of these in
reward-hacked kernels: KernelBench, the GPU MODE leaderboard). Each check below is one row of the gate, per
implementation, with the check's name; a failure fails the gate and names the kernel and the check.

``mutation``     the call leaves a, k and z bitwise unchanged (snapshots before, compared after every call);
``freshness``    new values written into the *same* input buffers give the new inputs' answer (no memoising by
                 buffer address, shape or earlier values; no stale output memory returned unwritten);
``aliasing``     the output shares no memory with the inputs nor with the previous call's output, which the
                 caller still holds (no returning the same tensor again);
``determinism``  two calls on the same inputs agree bitwise, unless the record says ``deterministic=False``
                 (then within the tolerance);
``stream``       CUDA: the time between events on the current stream and the synchronised wall time of the same
                 call agree (work launched on a side stream that the caller does not wait for looks
                 instantaneous to the events); skipped on the CPU;
``speed``        the timed call is not faster than the physical floor, ideal bytes / measured copy bandwidth
                 (:mod:`bkbench.harness.plausibility`).

The kernel is called as the suites and benchmarks call it: the registered function on inputs already in the
calling convention (docs/architecture.md), under ``torch.no_grad()``, with its default options.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bkbench.harness.accuracy import exact_tolerance, relative_error
from bkbench.harness.plausibility import bk_forward_bytes, cache_bytes, fmt_seconds, implausible, slack_for
from bkbench.harness.problems import Problem, make_inputs
from bkbench.harness.reference import reference
from bkbench.registry import Implementation, is_uniform
from bkbench.validate import HALF_DTYPES, normalize

CASES = {
    "mutation": "anti-cheat: input mutation",
    "freshness": "anti-cheat: output freshness",
    "aliasing": "anti-cheat: output aliasing",
    "determinism": "anti-cheat: determinism",
    "stream": "anti-cheat: measured stream",
    "speed": "anti-cheat: physical floor",
}
# the speed / stream problem (chains, N): the first one the implementation takes. On the CPU the Triton
# interpreter declines the first (seconds per call even at 256 elements; the floor means little there, CUDA checks it)
SPEED_SHAPES = {"cpu": [(256, 4096), (64, 1024), (4, 64)], "cuda": [(4096, 1024)]}
# (on the CPU 256 x 4096 is past the caches, so the floor is ~100x a no-work call even on a loaded machine)
STREAM_MIN_GAP_S = 100e-6  # wall - event below this is launch/sync noise, never a side stream
STREAM_RATIO = 0.5  # events must see at least half of the synchronised wall time
_BANDWIDTH: dict[str, float] = {}


@dataclass
class CheckRow:
    """One check's outcome (turned into a ``GateResult`` by the gate)."""

    check: str
    key: str
    status: str  # "pass", "fail", "skip"
    detail: str = ""
    error: float | None = None
    tolerance: float | None = None


def copy_bandwidth_gbs(device: str) -> float:
    """The device's measured copy bandwidth (GB/s, bytes read + written), measured once per process."""
    if device not in _BANDWIDTH:
        from bkbench.harness.timing import copy_bandwidth

        _BANDWIDTH[device] = copy_bandwidth(device)
    return _BANDWIDTH[device]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _prepared(rec: Implementation, p: Problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, k, z) of problem ``p`` in the kernel calling convention, a in the dtype ``rec`` receives."""
    inp = make_inputs(p)
    norm = normalize(inp.a, inp.b, inp.c, inp.z)
    a = norm.a
    if a.dtype in HALF_DTYPES and a.dtype not in rec.dtypes:
        a = a.to(torch.float32)
    return a.clone(), norm.k.clone() if not is_uniform(norm.k) else norm.k, norm.z.clone()


def _call(rec: Implementation, a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        g = rec.fn(a, k, z, **rec.defaults)
    _sync(a.device.type)
    return g


def _byte_range(t: torch.Tensor) -> tuple[int, int] | None:
    """[start, end) of the bytes ``t`` can address, or None when it is empty."""
    if t.numel() == 0:
        return None
    span = sum((s - 1) * st for s, st in zip(t.shape, t.stride())) + 1  # torch strides are never negative
    return t.data_ptr(), t.data_ptr() + span * t.element_size()


def shares_memory(x: torch.Tensor, y: torch.Tensor) -> bool:
    """True when ``x`` and ``y`` live on the same device and their addressed bytes overlap."""
    if x.device != y.device:
        return False
    rx, ry = _byte_range(x), _byte_range(y)
    return rx is not None and ry is not None and rx[0] < ry[1] and ry[0] < rx[1]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The bit pattern of ``t`` as an integer tensor (complex: of its real view)."""
    r = torch.view_as_real(t) if t.is_complex() else t
    return r.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[r.element_size()])


def _snapshot(*ts: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone() for t in ts]


def _mutation(names: tuple[str, ...], before: list[torch.Tensor], after: tuple[torch.Tensor, ...]) -> str | None:
    for name, b, t in zip(names, before, after):
        if t.shape != b.shape or not torch.equal(_bits(t), _bits(b)):
            diff = (t.detach().to(torch.complex128) - b.to(torch.complex128)).abs()
            where = diff.flatten().argmax().item() if diff.numel() else 0
            return (f"the call changed its input {name} (max |change| {float(diff.max()):.2e} at flat index "
                    f"{where}); a kernel must leave a, k and z untouched")
    return None


def value_checks(rec: Implementation, device: str, seed: int = 0) -> list[CheckRow]:
    """mutation, aliasing, determinism and freshness on a (3, 96) problem with random couplings (so k is a full
    tensor the kernel could write into) and one shift per chain."""
    dtype = "float32" if torch.float32 in rec.dtypes else "float64"
    p1 = Problem(batch=(3,), n=96, dtype=dtype, coupling="random", z_spread=0.3, device=device, seed=seed)
    reason = rec.decline_reason(p1) or (None if getattr(torch, dtype) in rec.dtypes else f"no {dtype} support")
    names = ("mutation", "aliasing", "determinism", "freshness")
    if reason:
        return [CheckRow(c, p1.key, "skip", reason) for c in names]
    tol = rec.tolerance(p1) or exact_tolerance(p1.torch_dtype)
    rows = {c: CheckRow(c, p1.key, "pass", tolerance=tol if c in ("freshness", "determinism") else None)
            for c in names}
    inputs = _prepared(rec, p1)
    labels = ("a", "k", "z")
    mutated: list[str] = []

    def call() -> torch.Tensor:
        before = _snapshot(*inputs)
        g = _call(rec, *inputs)
        why = _mutation(labels, before, inputs)
        if why and not mutated:
            mutated.append(why)
        return g

    def fail(check: str, detail: str, error: float | None = None) -> None:
        rows[check].status, rows[check].detail, rows[check].error = "fail", detail, error

    try:
        g1 = call()
        g2 = call()
    except Exception as exc:
        return [CheckRow(c, p1.key, "fail", f"the call raised {type(exc).__name__}: {exc}") for c in names]
    # aliasing: the caller still holds g1 when it gets g2
    if shares_memory(g1, g2):
        fail("aliasing", "the second call returned memory of the first call's output (the same tensor again?), "
                         "which the caller still holds")
    for name, t in zip(labels, inputs):
        for g in (g1, g2):
            if shares_memory(g, t):
                fail("aliasing", f"the output shares memory with the input {name}")
    # determinism
    if g1.shape == g2.shape and g1.dtype == g2.dtype:
        same = torch.equal(_bits(g1), _bits(g2))
        if not same:
            err = relative_error(g2, g1.to(torch.complex128))
            rows["determinism"].error = err.rel_err
            if rec.deterministic:
                fail("determinism", f"two calls on the same inputs differ (relative {err.rel_err:.2e}); the record "
                                    "says deterministic=True, so they must agree bitwise", err.rel_err)
            elif not err.rel_err <= tol:
                fail("determinism", f"two calls on the same inputs differ by {err.rel_err:.2e} > {tol:.1e}",
                     err.rel_err)
    else:
        fail("determinism", f"two calls returned {tuple(g1.shape)} {g1.dtype} and {tuple(g2.shape)} {g2.dtype}")
    # freshness: new values into the same buffers, the old outputs released first
    previous = g2.detach().to("cpu", torch.complex128)
    del g1, g2
    p2 = p1.with_(seed=seed + 1)
    ref2 = reference(make_inputs(p2))
    for buf, new in zip(inputs, _prepared(rec, p2)):
        if not is_uniform(buf):
            buf.copy_(new)
    try:
        g3 = call()
    except Exception as exc:
        fail("freshness", f"the call on new values raised {type(exc).__name__}: {exc}")
    else:
        if tuple(g3.shape) != tuple(ref2.shape):
            fail("freshness", f"returned shape {tuple(g3.shape)}, expected {tuple(ref2.shape)}")
        else:
            err = relative_error(g3, ref2)
            rows["freshness"].error = err.rel_err
            if not err.rel_err <= tol:
                stale = relative_error(g3, previous).rel_err == 0.0
                fail("freshness", f"after new values were written into the same input buffers, the result is off "
                                  f"by {err.rel_err:.2e} (> {tol:.1e}) from the new inputs' reference"
                                  + ("; it equals the previous call's result: memoised by buffer, shape or old "
                                     "values?" if stale else ""), err.rel_err)
    if mutated:
        fail("mutation", mutated[0])
    return [rows[c] for c in names]


def _speed_problem(rec: Implementation, device: str) -> tuple[Problem, str]:
    """The first speed shape ``rec`` takes and "", or the first shape and the reason it declines them all."""
    dtype = "float32" if torch.float32 in rec.dtypes else "float64"
    shapes = [Problem(batch=(b,), n=n, dtype=dtype, device=device, seed=0) for b, n in SPEED_SHAPES[device]]
    reasons = []
    for p in shapes:
        reason = rec.decline_reason(p) or ("" if getattr(torch, dtype) in rec.dtypes else f"no {dtype} support")
        if not reason:
            return p, ""
        reasons.append(reason)
    return shapes[0], reasons[0]


def stream_check(fn: Callable[[], Any], reps: int = 3) -> tuple[str | None, str]:
    """(failure reason or None, summary): CUDA events around each call on the current stream against the
    synchronised wall time of the same call; medians over ``reps`` calls."""
    events, walls = [], []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
        events.append(start.elapsed_time(end) * 1e-3)
    ev, wall = statistics.median(events), statistics.median(walls)
    summary = f"events {fmt_seconds(ev)}, synchronised wall {fmt_seconds(wall)}"
    if ev < STREAM_RATIO * wall and wall - ev > STREAM_MIN_GAP_S:
        return (f"{summary}: the current stream's events saw {100 * ev / wall:.0f} % of the call; its work runs "
                "outside the measured stream (a side stream the caller does not wait for)"), summary
    return None, summary


STREAM_SLEEP_CYCLES = 40_000_000  # ~20 ms of GPU clock: the caller's stream stays busy while the call is issued
STREAM_ORDER_TOL = 1e-3  # an unfinished or stale result is off by O(1); rounding differences are far below this


def stream_order_check(fn: Callable[[], torch.Tensor], a: torch.Tensor) -> tuple[str | None, str]:
    """(failure reason or None, summary): the call's work is ordered on the caller's current stream, whatever its
    speed. The stream is held busy (``torch.cuda._sleep``), new values are written into ``a`` behind the sleep, the
    call is issued and its result copied on the same stream right after it; once the device is synchronised, the
    copy and the result must both equal the result of a synchronised call on those values. A copy that differs:
    the result was finished outside the stream (a side stream the caller does not wait for); a result that differs:
    the call read ``a`` before the stream had written it (it does not wait for the caller's stream)."""
    old = a.clone()
    new = a + 0.25 * torch.rand_like(a)  # same sign and scale: the case stays as well-conditioned
    torch.cuda.synchronize()
    a.copy_(new)
    reference = fn()
    torch.cuda.synchronize()  # a side-stream call is complete only once the whole device is synchronised
    expected = reference.clone()
    a.copy_(old)
    fn()  # the allocator's next block for the result now holds the old values' result
    torch.cuda.synchronize()
    torch.cuda._sleep(STREAM_SLEEP_CYCLES)
    a.copy_(new)
    out = fn()
    snapshot = out.clone()
    torch.cuda.synchronize()
    e_snapshot = relative_error(snapshot, expected.to(torch.complex128)).rel_err
    e_out = relative_error(out, expected.to(torch.complex128)).rel_err
    a.copy_(old)
    summary = f"stream-ordered copy off by {e_snapshot:.1e}, result off by {e_out:.1e}"
    if not e_out <= STREAM_ORDER_TOL:
        return (f"{summary}: the call read its input before the caller's stream had written it (it does not wait "
                "for the current stream)"), summary
    if not e_snapshot <= STREAM_ORDER_TOL:
        return (f"{summary}: the result was not complete in the caller's stream order (its work runs on a side "
                "stream the caller does not wait for)"), summary
    return None, summary


def speed_checks(rec: Implementation, device: str, bandwidth_gbs: float | None = None) -> list[CheckRow]:
    """stream (CUDA) and speed (physical floor) on the first speed shape the implementation takes."""
    from bkbench.harness.timing import TimingConfig, measure

    p, reason = _speed_problem(rec, device)
    key = p.key
    if reason:
        return [CheckRow("stream", key, "skip", reason), CheckRow("speed", key, "skip", reason)]
    a, k, z = _prepared(rec, p)
    opts = dict(rec.defaults)

    def fn() -> Any:
        with torch.no_grad():
            return rec.fn(a, k, z, **opts)

    rows = []
    try:
        t0 = time.perf_counter()
        fn()  # compile / autotune, untimed
        _sync(device)
        first = time.perf_counter() - t0
        if device == "cuda":
            why, summary = stream_order_check(fn, a)
            if why is None:
                why, timed = stream_check(fn)
                summary = f"{summary}; {timed}"
            rows.append(CheckRow("stream", key, "fail" if why else "pass", why or summary))
        else:
            rows.append(CheckRow("stream", key, "skip", "CUDA only: the CPU has no streams"))
        mode = "cold" if device == "cuda" else "cpu"
        cfg = TimingConfig(mode=mode, warmup_s=0.0, budget_s=0.3, rel_ci=0.05, min_reps=5, min_reps_long=1,
                           min_warmup_calls=0, per_call_hint_s=first)
        timing = measure(fn, cfg, device)
    except Exception as exc:
        detail = f"the timed call raised {type(exc).__name__}: {exc}"
        return rows + [CheckRow(c, key, "fail", detail) for c in ("stream", "speed")[len(rows):]]
    out_dtype = torch.complex128 if p.dtype == "float64" else torch.complex64
    ideal = bk_forward_bytes(a.shape[0], a.shape[1], a.dtype, None if is_uniform(k) else k.dtype, out_dtype)
    bw = bandwidth_gbs if bandwidth_gbs is not None else copy_bandwidth_gbs(device)
    slack = slack_for(mode, ideal, cache_bytes(device))
    why = implausible(timing.median, ideal, bw, slack)
    floor = ideal / (bw * 1e9)
    summary = f"median {fmt_seconds(timing.median)}, floor {fmt_seconds(floor)} / {slack:g} (copy {bw:.4g} GB/s)"
    rows.append(CheckRow("speed", key, "fail" if why else "pass", why or summary))
    return rows


def run_checks(rec: Implementation, device: str, seed: int = 0,
               bandwidth_gbs: float | None = None) -> list[CheckRow]:
    """Every anti-cheat check of ``rec`` on ``device`` (never raises)."""
    rows: list[CheckRow] = []
    for part in (lambda: value_checks(rec, device, seed), lambda: speed_checks(rec, device, bandwidth_gbs)):
        try:
            rows.extend(part())
        except Exception as exc:  # a broken check must fail loudly, not take the gate down
            rows.append(CheckRow("anti-cheat", "-", "fail", f"the check itself raised {type(exc).__name__}: {exc}"))
    return rows
