"""RWKV-7 "Goose" time mixing (Peng et al. 2025) through fla-core's Triton kernel ``chunk_rwkv7``.

Form ``rwkv7``: r, k, kappa (B, N, H, K), w (B, N, H, K) log decays, a (B, N, H, K) in-context learning rates,
v (B, N, H, V) -> o (B, N, H, V) with S_t = Diag(exp(w_t)) S_{t-1} - (a_t * kappa_t)(kappa_t^T S_{t-1}) +
k_t v_t^T and o_t = S_t^T r_t. fla writes the transition as Diag(exp(w)) + b a^T with a = -kappa,
b = kappa * a, which is how fla's RWKV-7 layer calls it (scale 1, fla's default chunk of 16 for unbounded
decays); those two products are part of the timed call. The group norm, bonus term and output gate of the
RWKV-7 layer are outside the kernel and not included.

CUDA, bf16 only: fla warns that its DPLR chunk kernel "does not support float32 on some platforms". Its
backward is its own (no gated ``chunk_bwd_dqkwg``).
"""

from __future__ import annotations

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.ssm._fla_common import fla_available
from bkbench.registry import register


@register(
    "ssm_fla_rwkv7",
    kind="ssm",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.bfloat16,),
    differentiable=True,
    description="RWKV-7 time mixing via fla-core chunk_rwkv7 (Triton)",
    available=fla_available,
)
@baseline("rwkv7", variant="fused", heavy_compile=True)
def ssm_fla_rwkv7(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kappa: torch.Tensor, a: torch.Tensor
) -> torch.Tensor:
    """RWKV-7 wkv. Returns (B, N, H, V) in v's dtype."""
    from fla.ops.rwkv7 import chunk_rwkv7

    out, _ = chunk_rwkv7(r, w, k, v, -kappa, (kappa * a).to(kappa.dtype), scale=1.0)
    return out
