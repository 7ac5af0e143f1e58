"""pytest-benchmark over the registry: every BK-core implementation x a few shapes, on the CPU and on CUDA when
present. Run with ``pytest tests/benchmarks --benchmark-only -p no:xdist`` (docs/pytest-benchmark.md).

Timing: the marker's timer (``bkbench.benchtimer.timer``) drains the CUDA queue before each clock read, and
rounds last >= 10 ms (``min_time``), so pytest-benchmark's rounds of back-to-back calls measure device time (or
the host's pace, for a launch-bound call) with the synchronisation amortised. The timed callable is the kernel on
pre-normalised inputs (``bkbench.benchcase``), the same callable asv and the suite runner time.

Each benchmark first checks the result against the float64 reference (first 4 chains) and fails when the error
exceeds the gate's tolerance: a wrong kernel gets no speed. ``extra_info`` (in ``--benchmark-json``) carries the
implementation, device, case key, ideal bytes, achieved GB/s, % of the measured copy bandwidth (roofline), the
copy bandwidth itself, the relative error and its tolerance.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from bkbench import benchcase
from bkbench.accuracy import exact_tolerance
from bkbench.benchtimer import timer
from bkbench.premerge import parse_shape
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


@pytest.mark.benchmark(timer=timer, warmup=True, warmup_iterations=20, min_time=MIN_ROUND_S)
@pytest.mark.parametrize(("impl", "device", "batch", "n", "dtype"), _cases())
def test_bk_core(benchmark, impl: str, device: str, batch: int, n: int, dtype: str) -> None:
    rec = benchcase.find(impl)
    problem = benchcase.make_problem(batch, n, dtype, device)
    try:
        case = benchcase.prepare(rec, problem)
    except benchcase.Skip as exc:
        pytest.skip(str(exc))
    err = benchcase.relative_error(case)
    tol = rec.tolerance(problem) or exact_tolerance(problem.torch_dtype)
    info = benchmark.extra_info
    info.update(impl=impl, device=device, case=problem.key, batch=batch, n=n, dtype=dtype,
                work_dtype=str(case.work_dtype).replace("torch.", ""), ideal_bytes=case.ideal_bytes,
                rel_err=err, tolerance=tol, exact=rec.exact)
    assert math.isfinite(err) and err <= tol, f"{impl} is wrong on {problem.key}: error {err:.2e} > {tol:.1e}"

    benchmark.group = f"bk_core {device} B{batch}xN{n} {dtype}"
    benchmark(case.fn)

    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        median = stats.stats.median
        bandwidth = _copy_bandwidth(device)
        info.update(median_s=median, gbs=case.gbs(median), copy_bandwidth_gbs=bandwidth,
                    roofline_pct=100.0 * case.gbs(median) / bandwidth)
