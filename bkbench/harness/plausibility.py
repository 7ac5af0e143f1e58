"""The physical floor of a measured time: no call moves its compulsory bytes faster than the device copies memory.

    floor_s = ideal_bytes / copy_bandwidth      (copy bandwidth measured on this device, bytes read + written)

A time below ``floor_s / slack`` is *implausible*: the implementation skipped work (returned a memoised or
precomputed answer, ran on another stream, or did not run) or the timing is broken. It is flagged and never
reported as a result — the gate fails it, a suite row gets status ``implausible`` instead of ``ok``, premerge
fails the comparison.

``slack`` allows for what can legitimately beat the DRAM copy rate:

- :data:`FLOOR_SLACK` (1.5) when the inputs come from DRAM: cold timing (L2 flushed before every call), or a
  working set larger than any cache. Legitimate rows reach 100-103 % of the copy bandwidth on the H100
  (``reports/h100``: triton_fused 100.1 %, cuDNN attention 102.9 %), so 150 % is far from an honest kernel.
- :data:`CACHE_SLACK` (8) when the data may sit in a cache between calls (warm or graph timing, CPU timing)
  and the working set fits (:func:`cache_bytes`): L2 / last-level caches serve a few times the DRAM rate.

A time that cannot be judged (no copy bandwidth, no byte model, a non-positive time) is never flagged.
"""

from __future__ import annotations

import math

import torch

FLOOR_SLACK = 1.5
CACHE_SLACK = 8.0
CPU_CACHE_BYTES = 256 * 1024 * 1024  # larger than the last-level cache of any CPU we run on
CUDA_CACHE_FACTOR = 2  # a working set up to 2 x L2 may still be served mostly from L2 when not flushed


def floor_seconds(ideal_bytes: float | None, copy_bandwidth_gbs: float | None) -> float | None:
    """ideal_bytes / copy bandwidth (GB/s = 1e9 bytes/s), or None when either is missing or not positive."""
    if not ideal_bytes or not copy_bandwidth_gbs or ideal_bytes <= 0 or copy_bandwidth_gbs <= 0:
        return None
    return float(ideal_bytes) / (float(copy_bandwidth_gbs) * 1e9)


def cache_bytes(device: str) -> int:
    """Bytes a working set may have and still be served from cache between calls on ``device``."""
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return CUDA_CACHE_FACTOR * int(getattr(props, "L2_cache_size", 0) or 50 * 1024 * 1024)
    return CPU_CACHE_BYTES


def slack_for(timing_mode: str, ideal_bytes: float, cache: int) -> float:
    """:data:`CACHE_SLACK` when the timing leaves caches warm (``warm``, ``graph``, ``cpu``) and ``ideal_bytes``
    fits in ``cache`` bytes; :data:`FLOOR_SLACK` otherwise (``cold`` flushes L2 before every call)."""
    if timing_mode != "cold" and ideal_bytes <= cache:
        return CACHE_SLACK
    return FLOOR_SLACK


def implausible(seconds: float | None, ideal_bytes: float | None, copy_bandwidth_gbs: float | None,
                slack: float = FLOOR_SLACK) -> str | None:
    """Why ``seconds`` per call is below the physical floor (divided by ``slack``), or None when it is not (or
    cannot be judged)."""
    floor = floor_seconds(ideal_bytes, copy_bandwidth_gbs)
    if floor is None or seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    if seconds >= floor / slack:
        return None
    return (f"implausible speed: {fmt_seconds(seconds)} per call is below the physical floor {fmt_seconds(floor)} "
            f"/ {slack:g} ({ideal_bytes / 1e6:.3g} MB of compulsory traffic at the measured copy bandwidth "
            f"{copy_bandwidth_gbs:.4g} GB/s = {100 * floor / seconds:.0f} % of copy speed); the work was skipped "
            "or not timed (memoised or precomputed result, another stream) -- not reported as a result")


def bk_forward_bytes(chains: int, n: int, a_dtype: torch.dtype, k_dtype: torch.dtype | None,
                     out_dtype: torch.dtype) -> float:
    """Compulsory bytes of one BK-core forward: a (chains, N) read, k (chains, N-1) read (``k_dtype`` None for a
    uniform coupling, read once), z (chains,) read, G (chains, N) written."""
    def elt(dt: torch.dtype) -> int:
        return torch.empty((), dtype=dt).element_size()

    k_bytes = 0 if k_dtype is None else chains * max(n - 1, 0) * elt(k_dtype)
    return float(chains * n * elt(a_dtype) + k_bytes + chains * elt(out_dtype) + chains * n * elt(out_dtype))


def fmt_seconds(s: float) -> str:
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.3g} us"
    return f"{s * 1e9:.3g} ns"
