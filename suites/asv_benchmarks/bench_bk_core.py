"""asv benchmarks of every registered BK-core implementation: implementation x N x dtype.

Two callables per case (``bkbench/harness/benchcase.py``), both on the same seeded inputs:
the **user call** ``bkbench.bk_core(a, b, c, z, impl=...)`` with inputs as a user holds them (``a`` (B, N),
separate ``b``, ``c`` (B, N-1), ``z`` = 1j; validation and normalisation inside the timed call) — the headline —
and the **bare kernel** ``rec.fn(a, k, z)`` on inputs prepared once outside the timing.

``BKCore.time_bk_core``   asv's own timing of one user call. The timer (``bkbench.harness.benchtimer.timer``) waits
                          for queued CUDA work before it reads the clock, so each sample is the call's real
                          device time plus one launch and one synchronisation (≈ 5–10 µs on an H100: compare
                          µs-scale calls with ``track_median``).
``BKCore.time_bare_kernel``  the same for the bare kernel.
``BKCore.track_median``   the harness's own median of the user call (``bkbench/harness/timing.py``: CUDA events around
                          back-to-back calls on the GPU, ``perf_counter`` on the CPU, adaptive repetitions), in
                          seconds; ``track_kernel_median`` the same for the bare kernel.
``BKCoreRoofline.track_roofline_pct``  GPU only: achieved bandwidth of the user call at the anchor shape
                          B16384·N4096 float32, counted with the call's own ideal bytes (a, b, c read, G
                          written: 20 B per element), as a percentage of the measured device copy bandwidth;
                          ``track_kernel_roofline_pct`` the bare kernel's, with its own (a, k read, G written:
                          16 B per element). Skipped on a machine without a GPU (setup raises
                          NotImplementedError with the reason).

A parameter combination an implementation cannot run here (device, dtype, availability, a Triton kernel under
the CPU interpreter) is skipped the same way, with the reason printed by asv.

The grid depends on the device (CUDA if available, else CPU) and can be narrowed with environment variables,
read identically at discovery and in every benchmark process:

    BKBENCH_ASV_IMPLS=thomas,triton_fused   implementations (default: every BK-core implementation registered)
    BKBENCH_ASV_N=256,2048                  chain lengths N   (CPU default 256,2048; GPU 1024,4096,16384)
    BKBENCH_ASV_BATCH=8                     chains B          (CPU default 8; GPU 1024)
    BKBENCH_ASV_DTYPES=float32              dtypes            (default float32,float64)
    BKBENCH_ASV_DEVICE=cpu                  force the device

Inputs: Laplacian couplings (b = c = 1 per position), potential 0.5, z = 1j, seed 0 (``bkbench.harness.benchcase``).
"""

from __future__ import annotations

import os

import torch

from bkbench.registry import default_registry

from ._tree import load

benchcase = load("benchcase")
benchtimer = load("benchtimer")


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    return [x.strip() for x in raw.split(",") if x.strip()] if raw else default


DEVICE = os.environ.get("BKBENCH_ASV_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
_DEFAULT_N = {"cpu": ["256", "2048"], "cuda": ["1024", "4096", "16384"]}
_DEFAULT_B = {"cpu": "8", "cuda": "1024"}
IMPLS = _env_list("BKBENCH_ASV_IMPLS", default_registry().names("bk"))
NS = [int(n) for n in _env_list("BKBENCH_ASV_N", _DEFAULT_N.get(DEVICE, _DEFAULT_N["cpu"]))]
BATCH = int(os.environ.get("BKBENCH_ASV_BATCH") or _DEFAULT_B.get(DEVICE, "8"))
DTYPES = _env_list("BKBENCH_ASV_DTYPES", ["float32", "float64"])
ROOFLINE_SHAPE = (16384, 4096)  # B, N: 1 GiB moved per float32 call, far beyond L2

_CASES: dict[tuple, object] = {}


def _case(impl: str, batch: int, n: int, dtype: str, device: str):
    """The prepared case (cached per process; asv re-runs setup before every timed call)."""
    key = (impl, batch, n, dtype, device)
    hit = _CASES.get(key)
    if hit is None:
        try:
            rec = benchcase.find(impl)
            hit = benchcase.prepare(rec, benchcase.make_problem(batch, n, dtype, device))
        except benchcase.Skip as exc:
            hit = exc
        except ValueError as exc:  # e.g. an implementation this commit does not have
            hit = benchcase.Skip(str(exc))
        _CASES[key] = hit
    if isinstance(hit, benchcase.Skip):
        raise NotImplementedError(str(hit))
    return hit


class BKCore:
    """One forward BK-core call, G = diag((T - zI)^-1) for B chains of length N: the user call and the bare
    kernel."""

    params = (IMPLS, NS, DTYPES)
    param_names = ("impl", "n", "dtype")
    timer = staticmethod(benchtimer.timer)
    timeout = 600
    if DEVICE == "cuda":
        rounds = 2
        repeat = (5, 20, 5.0)
        warmup_time = 0.2
    else:
        rounds = 1
        repeat = (2, 10, 3.0)
        warmup_time = 0.05

    def setup(self, impl: str, n: int, dtype: str) -> None:
        self.case = _case(impl, BATCH, n, dtype, DEVICE)

    def time_bk_core(self, impl: str, n: int, dtype: str) -> None:
        self.case.fn()

    def time_bare_kernel(self, impl: str, n: int, dtype: str) -> None:
        self.case.kernel_fn()

    def track_median(self, impl: str, n: int, dtype: str) -> float:
        return float(benchcase.measure(self.case, budget_s=1.0).median)

    track_median.unit = "seconds"

    def track_kernel_median(self, impl: str, n: int, dtype: str) -> float:
        return float(benchcase.measure(self.case, budget_s=1.0, target="kernel").median)

    track_kernel_median.unit = "seconds"


class BKCoreRoofline:
    """GPU only: achieved GB/s of B16384·N4096 float32 as a % of the measured device copy bandwidth (user call
    and bare kernel, each with its own ideal bytes)."""

    params = (IMPLS,)
    param_names = ("impl",)
    timeout = 600

    def setup(self, impl: str) -> None:
        if DEVICE != "cuda" or not torch.cuda.is_available():
            raise NotImplementedError("GPU-only benchmark: no CUDA device on this machine")
        self.case = _case(impl, *ROOFLINE_SHAPE, "float32", "cuda")

    def track_roofline_pct(self, impl: str) -> float:
        median = benchcase.measure(self.case, budget_s=2.0).median
        return 100.0 * self.case.gbs(median) / benchcase.copy_bandwidth("cuda")

    track_roofline_pct.unit = "%"

    def track_kernel_roofline_pct(self, impl: str) -> float:
        median = benchcase.measure(self.case, budget_s=2.0, target="kernel").median
        return 100.0 * self.case.kernel_gbs(median) / benchcase.copy_bandwidth("cuda")

    track_kernel_roofline_pct.unit = "%"
