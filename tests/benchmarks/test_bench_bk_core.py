"""pytest-benchmark over the registry: every BK-core implementation x a few shapes, on the CPU and on CUDA when
present. Run with ``pytest tests/benchmarks --benchmark-only -p no:xdist`` (docs/pytest-benchmark.md).

Two benchmarks per case, in one group (``bk_core <device> B<b>xN<n> <dtype>``), so pytest-benchmark's table
shows them side by side: ``test_bk_core`` times the **user call** ``bkbench.bk_core(a, b, c, z, impl=...)``
with inputs as a user holds them (``a`` (B, N), separate ``b``, ``c`` (B, N-1), ``z`` = 1j) — the headline;
``test_bk_kernel`` times the **bare kernel** ``rec.fn(a, k, z)`` on inputs prepared once outside the timing
(``bkbench.harness.benchcase``; the same callables asv, premerge and the suite runner time).

Timing: the marker's timer (``bkbench.harness.benchtimer.timer``) drains the CUDA queue before each clock read, and
rounds last >= 10 ms (``min_time``), so pytest-benchmark's rounds of back-to-back calls measure device time (or
the host's pace, for a launch-bound call) with the synchronisation amortised.

Each benchmark first checks the result of what it times against the float64 reference (first 4 chains) and
fails when the error exceeds the gate's tolerance: a wrong result gets no speed. ``extra_info`` (in
``--benchmark-json``) carries ``timed`` ("user call (bk_core)" or "bare kernel"), the implementation, device,
case key, the timed callable's own ideal bytes, achieved GB/s, % of the measured copy bandwidth (roofline), the
copy bandwidth itself, the relative error and its tolerance.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from bkbench.harness import benchcase
from bkbench.harness.accuracy import exact_tolerance
from bkbench.harness.benchtimer import timer
from bkbench.harness.premerge import parse_shape
from bkbench.registry import default_registry

CPU_SHAPES = [(8, 256, "float32"), (8, 2048, "float32"), (8, 2048, "float64")]
CUDA_SHAPES = [(1024, 4096, "float32"), (16384, 4096, "float32"), (1024, 4096, "float64")]


def _shapes(env: str, default: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Shapes from ``$env`` ("BxN[:dtype],..." e.g. "4096x4096,1024x4096:float64"), else ``default``."""
    raw = os.environ.get(env, "").strip()
    return [parse_shape(s.strip()) for s in raw.split(",") if s.strip()] if raw else default


def _cases() -> list:
    """Every BK-core implementation x device x shape; narrowed by $BKBENCH_BENCH_IMPLS (comma list),
    $BKBENCH_BENCH_CPU_SHAPES and $BKBENCH_BENCH_CUDA_SHAPES (empty string keeps the defaults)."""
    devices = [("cpu", _shapes("BKBENCH_BENCH_CPU_SHAPES", CPU_SHAPES))]
    if torch.cuda.is_available():
        devices.append(("cuda", _shapes("BKBENCH_BENCH_CUDA_SHAPES", CUDA_SHAPES)))
    only = [x.strip() for x in os.environ.get("BKBENCH_BENCH_IMPLS", "").split(",") if x.strip()]
    out = []
    for impl in only or default_registry().names("bk"):
        for device, shapes in devices:
            for batch, n, dtype in shapes:
                out.append(pytest.param(impl, device, batch, n, dtype, id=f"{impl}-{device}-B{batch}xN{n}-{dtype}"))
    return out


_BANDWIDTH: dict[str, float] = {}


def _copy_bandwidth(device: str) -> float:
    if device not in _BANDWIDTH:
        _BANDWIDTH[device] = benchcase.copy_bandwidth(device)
    return _BANDWIDTH[device]


# min_time: pytest-benchmark calibrates how many calls make one round so that a round lasts >= min_time. Its
# default (5 µs) gives one call per round on a GPU, and each round then pays a launch and a device
# synchronisation on top of the kernel (+15..+45 % for 100 µs kernels, reports/agreement/). 10 ms rounds amortise
# them to < 1 %; the reported figure stays per call (round time / calls per round).
MIN_ROUND_S = 0.01


TIMED = {"call": "user call (bk_core)", "kernel": "bare kernel"}


def _bench(benchmark, target: str, impl: str, device: str, batch: int, n: int, dtype: str) -> None:
    """Check, then time ``target`` ("call" or "kernel") of the case; fill ``extra_info``."""
    rec = benchcase.find(impl)
    problem = benchcase.make_problem(batch, n, dtype, device)
    try:
        case = benchcase.prepare(rec, problem)
    except benchcase.Skip as exc:
        pytest.skip(str(exc))
    err = benchcase.relative_error(case, target=target)
    tol = rec.tolerance(problem) or exact_tolerance(problem.torch_dtype)
    ideal = case.ideal_bytes if target == "call" else case.kernel_ideal_bytes
    info = benchmark.extra_info
    info.update(timed=TIMED[target], impl=impl, device=device, case=problem.key, batch=batch, n=n, dtype=dtype,
                work_dtype=str(case.work_dtype).replace("torch.", ""), ideal_bytes=ideal, rel_err=err,
                tolerance=tol, exact=rec.exact)
    assert math.isfinite(err) and err <= tol, (f"{impl} ({TIMED[target]}) is wrong on {problem.key}: error "
                                               f"{err:.2e} > {tol:.1e}")

    benchmark.group = f"bk_core {device} B{batch}xN{n} {dtype}"
    benchmark(case.callable(target))

    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        median = stats.stats.median
        bandwidth = _copy_bandwidth(device)
        gbs = ideal / median / 1e9
        info.update(median_s=median, gbs=gbs, copy_bandwidth_gbs=bandwidth, roofline_pct=100.0 * gbs / bandwidth)


@pytest.mark.benchmark(timer=timer, warmup=True, warmup_iterations=20, min_time=MIN_ROUND_S)
@pytest.mark.parametrize(("impl", "device", "batch", "n", "dtype"), _cases())
def test_bk_core(benchmark, impl: str, device: str, batch: int, n: int, dtype: str) -> None:
    """The user call bk_core(a, b, c, z, impl=...): the headline."""
    _bench(benchmark, "call", impl, device, batch, n, dtype)


@pytest.mark.benchmark(timer=timer, warmup=True, warmup_iterations=20, min_time=MIN_ROUND_S)
@pytest.mark.parametrize(("impl", "device", "batch", "n", "dtype"), _cases())
def test_bk_kernel(benchmark, impl: str, device: str, batch: int, n: int, dtype: str) -> None:
    """The bare kernel rec.fn(a, k, z) on prepared inputs."""
    _bench(benchmark, "kernel", impl, device, batch, n, dtype)
