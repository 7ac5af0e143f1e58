"""``impl="auto"``: which implementation :func:`bkbench.bk_core` runs.

This module holds the deterministic fallback (a fixed preference order per device). Data-driven choices
(from tuning and benchmark results) refine it; :func:`choose` always returns the reason for its pick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bkbench.registry import Registry

# Fixed preference when no measurement says otherwise: exact implementations only, fastest-first as
# measured on each device type (see reports/).
FALLBACK_ORDER = {
    "cuda": ("triton_fused", "assoc_scan", "thomas", "naive_loop"),
    "cpu": ("thomas", "assoc_scan", "naive_loop"),
}


@dataclass(frozen=True)
class Choice:
    impl: str
    reason: str


def choose(device: str, dtype: torch.dtype, batch: int, n: int, registry: Registry) -> Choice:
    """Pick an exact BK-core implementation for (device, dtype, batch, n); never raises for a known device."""
    if device not in FALLBACK_ORDER:
        raise ValueError(f"device: {device!r} is not supported; use 'cpu' or 'cuda'")
    skipped = []
    for name in FALLBACK_ORDER[device]:
        if name not in registry:
            skipped.append(f"{name}: not registered")
            continue
        rec = registry.get(name)
        reason = rec.unavailable_reason() or (None if device in rec.devices else f"no {device} support")
        if reason is None and not rec.exact:
            reason = "approximate"
        if reason:
            skipped.append(f"{name}: {reason}")
            continue
        why = f"fallback order for {device}: first usable of {', '.join(FALLBACK_ORDER[device])}"
        if skipped:
            why += f" (skipped {'; '.join(skipped)})"
        return Choice(name, why)
    raise ValueError(f"impl: no exact implementation is usable on {device} ({'; '.join(skipped)})")
