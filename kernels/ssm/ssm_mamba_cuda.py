"""Mamba-1 selective scan: the official fused CUDA kernel, ``mamba_ssm``'s ``selective_scan_fn``.

Optional: ``mamba-ssm`` is published on PyPI as a source distribution only and needs a CUDA build (see
docs/baselines.md, "Building mamba-ssm"). When it cannot be imported the implementation is registered but
unavailable, and the gate, ``bkbench list`` and the reports show the reason instead of a number.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bkbench.baseline_meta import baseline
from bkbench.registry import register

NOT_INSTALLED = "mamba_ssm not installed (build from sdist, see docs/baselines.md)"


def _selective_scan_fn() -> Callable[..., torch.Tensor]:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn


def _available() -> str | None:
    try:
        _selective_scan_fn()
    except ModuleNotFoundError:
        return NOT_INSTALLED
    except Exception as exc:  # installed but broken (ABI mismatch with torch, missing .so, ...)
        return f"mamba_ssm import failed: {type(exc).__name__}: {exc}"
    if not torch.cuda.is_available():
        return "needs CUDA"
    return None


@register(
    "ssm_mamba_cuda",
    kind="ssm",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.float32, torch.bfloat16, torch.float16),
    differentiable=True,
    description="Mamba-1 selective scan, mamba_ssm fused CUDA kernel (optional package)",
    available=_available,
)
@baseline("selective_scan", variant="fused")
def ssm_mamba_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> (B, d, N) in u's dtype."""
    return _selective_scan_fn()(
        u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus
    )
