"""Kimi Delta Attention (Kimi Linear, Moonshot AI 2025) through fla-core's Triton kernel ``chunk_kda``.

Form ``kda``: q, k (B, N, H, K) unit-norm, v (B, N, H, V), g (B, N, H, K) log forget gates per key channel,
beta (B, N, H) -> o (B, N, H, V) with S_t = (I - beta_t k_t k_t^T) Diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T
and o_t = K^-1/2 S_t^T q_t (g precomputed in log space: ``use_gate_in_kernel=False``; beta in (0, 1); q, k
normalised by the caller). CUDA, bf16 only: fla's own tests run ``chunk_kda`` in 16-bit only. KDA has its own
backward (no gated ``chunk_bwd_dqkwg``), so fla's Hopper / Triton < 3.7.1 guard does not apply.
"""

from __future__ import annotations

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.ssm._fla_common import fla_available
from bkbench.registry import register


@register(
    "ssm_fla_kda",
    kind="ssm",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.bfloat16,),
    differentiable=True,
    description="Kimi Delta Attention via fla-core chunk_kda (Triton)",
    available=fla_available,
)
@baseline("kda", variant="fused", heavy_compile=True)
def ssm_fla_kda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """KDA. Returns (B, N, H, V) in v's dtype."""
    from fla.ops.kda import chunk_kda

    out, _ = chunk_kda(q, k, v, g, beta, scale=q.shape[-1] ** -0.5)
    return out
