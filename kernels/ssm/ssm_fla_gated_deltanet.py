"""Gated DeltaNet (Yang, Kautz and Hatamizadeh, ICLR 2025) through fla-core's chunked Triton kernel
``chunk_gated_delta_rule``.

Form ``gated_delta_rule``: q, k (B, N, H, K) unit-norm, v (B, N, H, V), g (B, N, H) log forget gates, beta
(B, N, H) -> o (B, N, H, V) with S_t = (I - beta_t k_t k_t^T) exp(g_t) S_{t-1} + beta_t k_t v_t^T and
o_t = K^-1/2 S_t^T q_t (fla's conventions: g in log space, beta already in (0, 1), q and k normalised by the
caller, scale K^-1/2). CUDA only.

float32 multiplies in TF32 on tensor cores (Triton's default for fp32 ``tl.dot``), hence its 1e-2 tolerance.
Forward + backward is declined on Hopper GPUs with Triton >= 3.4.0 and < 3.7.1, where fla refuses the gated
``chunk_bwd_dqkwg`` this backward calls (the same guard as fla's SSD backward; docs/baselines.md).
"""

from __future__ import annotations

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.ssm._fla_common import fla_available, hopper_gated_bwd_reason
from bkbench.registry import register


@register(
    "ssm_fla_gated_deltanet",
    kind="ssm",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.float32, torch.bfloat16),
    differentiable=True,
    description="Gated DeltaNet via fla-core chunk_gated_delta_rule (Triton)",
    available=fla_available,
    supports=hopper_gated_bwd_reason("chunk_gated_delta_rule"),
)
@baseline(
    "gated_delta_rule",
    variant="fused",
    heavy_compile=True,
    tolerances={torch.float32: 1e-2},
    tolerance_note="fla's fp32 path multiplies in TF32 on tensor cores (Triton's default for fp32 tl.dot)",
)
def ssm_fla_gated_deltanet(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """Gated delta rule. Returns (B, N, H, V) in v's dtype."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    out, _ = chunk_gated_delta_rule(q, k, v, g, beta, scale=q.shape[-1] ** -0.5)
    return out
