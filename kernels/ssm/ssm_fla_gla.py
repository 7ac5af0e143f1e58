"""Gated linear attention (per-key-dim gates) through fla-core's Triton kernel ``chunk_gla``.

Form ``gla``: q, k, g (B, N, H, K), v (B, N, H, V) -> o (B, N, H, V) with S_t = diag(exp(g_t)) S_{t-1} +
k_t v_t^T and o_t = K^-1/2 q_t^T S_t.

CUDA, bf16 only. On an H100 (torch 2.11, Triton 3.6) fla 0.6.0's ``chunk_gla`` with float32 inputs faulted
with "CUDA error: misaligned address" at N = 17 (first device run, docs/baselines.md), and fla's own tests
run the chunk kernels in fp16/bf16 only; fp16 is left out to keep the GPU battery short.
"""

from __future__ import annotations

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.ssm._fla_common import fla_available
from bkbench.registry import register


@register(
    "ssm_fla_gla",
    kind="ssm",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.bfloat16,),
    differentiable=True,
    description="GLA via fla-core chunk_gla (Triton)",
    available=fla_available,
)
@baseline("gla", variant="fused", heavy_compile=True)
def ssm_fla_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """GLA. Returns (B, N, H, V) in q's dtype."""
    from fla.ops.gla import chunk_gla

    out, _ = chunk_gla(q, k, v, g, scale=q.shape[-1] ** -0.5)
    return out
