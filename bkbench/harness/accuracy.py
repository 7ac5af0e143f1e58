"""Error metrics and tolerances.

The headline metric is the normwise relative error ``max|G - G_ref| / max|G_ref|`` (over the whole tensor).
The gate also records the worst per-chain value of the same ratio, which catches a single bad chain whose
|G| is small. NaN or Inf anywhere is an infinite error: it never passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Tolerance of an exact implementation on max|G - G_ref| / max|G_ref|, by the precision of the work.
EXACT_TOLERANCE = {torch.float32: 2e-4, torch.float64: 1e-9}
GRAD_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-9}


@dataclass(frozen=True)
class ErrorReport:
    rel_err: float  # max|G - G_ref| / max|G_ref| (inf if any non-finite)
    rel_err_chain: float  # worst over chains of the same ratio per chain
    finite: bool

    @property
    def value(self) -> float:
        return self.rel_err


def relative_error(g: torch.Tensor, ref: torch.Tensor) -> ErrorReport:
    """Compare g (any complex/real dtype, any device) with ref (complex128) of the same shape."""
    if tuple(g.shape) != tuple(ref.shape):
        raise ValueError(f"g: shape {tuple(g.shape)} does not match the reference shape {tuple(ref.shape)}")
    g64 = g.detach().to("cpu").to(torch.complex128)
    ref = ref.detach().to("cpu").to(torch.complex128)  # a reference computed on the GPU is compared on the CPU
    finite = bool(torch.isfinite(g64).all())
    if not finite:
        return ErrorReport(math.inf, math.inf, False)
    diff = (g64 - ref).abs()
    scale = ref.abs()
    denom = float(scale.max()) if scale.numel() else 1.0
    rel = float(diff.max()) / denom if denom > 0 else float(diff.max())
    n = g64.shape[-1]
    per = diff.reshape(-1, n).amax(dim=1) / scale.reshape(-1, n).amax(dim=1).clamp_min(1e-300)
    return ErrorReport(rel, float(per.max()) if per.numel() else 0.0, True)


def exact_tolerance(dtype: torch.dtype) -> float:
    """Tolerance of an exact implementation for inputs of ``dtype`` (half types are computed in float32)."""
    return EXACT_TOLERANCE[torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32]


def grad_tolerance(dtype: torch.dtype) -> float:
    """Tolerance of the gradient w.r.t. ``a`` for inputs of ``dtype``.

    A half-precision leaf gets its gradient back in its own dtype (autograd rounds it), so the unit roundoff
    of that dtype (bf16 2^-8, fp16 2^-11) is added to the float32 tolerance of the work itself."""
    if dtype in (torch.float64, torch.complex128):
        return GRAD_TOLERANCE[torch.float64]
    if dtype in (torch.bfloat16, torch.float16):
        return GRAD_TOLERANCE[torch.float32] + torch.finfo(dtype).eps / 2
    return GRAD_TOLERANCE[torch.float32]
