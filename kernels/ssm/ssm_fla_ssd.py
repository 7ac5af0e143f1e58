"""Mamba-2 SSD through fla-core's Triton kernel ``chunk_simple_gla``.

Simple GLA with a per-head scalar log-decay g is the SSD recurrence: with q = C, k = B, v = dt·x,
g = dt·A and scale 1, ``chunk_simple_gla`` computes h_t = exp(g_t) h_{t-1} + k_t v_t^T, o_t = q_t^T h_t,
which is Mamba-2's y_t = h_t C_t (fla keeps the state as (K, V) = (n, P)). Form ``ssd``; CUDA only.

Forward + backward is declined on Hopper GPUs with Triton >= 3.4.0 and < 3.7.1: fla refuses its gated
``chunk_bwd_dqkwg`` there (it raised on every H100 run of the suites; see docs/baselines.md).
"""

from __future__ import annotations

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.ssm._fla_common import fla_available, hopper_gated_bwd_reason
from bkbench.registry import register


@register(
    "ssm_fla_ssd",
    kind="ssm",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.float32, torch.bfloat16),
    differentiable=True,
    description="Mamba-2 SSD via fla-core chunk_simple_gla (Triton)",
    available=fla_available,
    supports=hopper_gated_bwd_reason("chunk_simple_gla"),
)
@baseline(
    "ssd",
    variant="fused",
    heavy_compile=True,
    tolerances={torch.float32: 1e-2},
    tolerance_note="fla's fp32 path multiplies in TF32 on tensor cores (Triton's default for fp32 tl.dot)",
)
def ssm_fla_ssd(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """Mamba-2 SSD. x (B, N, H, P), dt (B, N, H), A (H,), B, C (B, N, H, n) -> (B, N, H, P) in x's dtype."""
    from fla.ops.simple_gla import chunk_simple_gla

    v = (x * dt[..., None]).to(x.dtype)
    g = (dt * A).float()
    out, _ = chunk_simple_gla(C, B, v, g=g, scale=1.0)
    return out
