"""Peak memory of one call: the CUDA caching allocator's peak, reset right before the call.

``peak_bytes`` is the peak of ``torch.cuda.memory_allocated`` during the call (inputs already resident
included); ``extra_bytes`` = peak - allocated before the call (the call's own transient + output memory).
On the CPU torch does not track allocations: the result says "unavailable" with the reason, never a number.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class MemoryResult:
    status: str  # "ok" or "unavailable: <reason>"
    peak_bytes: int | None = None
    before_bytes: int | None = None

    @property
    def extra_bytes(self) -> int | None:
        if self.peak_bytes is None or self.before_bytes is None:
            return None
        return self.peak_bytes - self.before_bytes


def peak_memory(fn: Callable[[], Any], device: str = "cuda") -> MemoryResult:
    """Run ``fn`` once and return its peak allocated memory (CUDA caching allocator)."""
    if device != "cuda":
        return MemoryResult("unavailable: torch does not track CPU allocations")
    if not torch.cuda.is_available():
        return MemoryResult("unavailable: no CUDA device")
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return MemoryResult("ok", int(peak), int(before))
