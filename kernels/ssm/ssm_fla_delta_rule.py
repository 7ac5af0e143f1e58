"""DeltaNet (Schlag, Irie and Schmidhuber 2021; chunked by Yang et al. 2024) through fla-core's Triton kernel
``chunk_delta_rule``.

Form ``delta_rule``: q, k (B, N, H, K) unit-norm, v (B, N, H, V), beta (B, N, H) -> o (B, N, H, V) with
S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T and o_t = K^-1/2 S_t^T q_t. CUDA, bf16 only:
fla 0.6.0's ``chunk_delta_rule`` asserts "does not support float32". The backward calls ``chunk_bwd_dqkwg``
without a gate, which fla's Hopper / Triton < 3.7.1 guard leaves alone.
"""

from __future__ import annotations

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.ssm._fla_common import fla_available
from bkbench.registry import register


@register(
    "ssm_fla_delta_rule",
    kind="ssm",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.bfloat16,),
    differentiable=True,
    description="DeltaNet via fla-core chunk_delta_rule (Triton)",
    available=fla_available,
)
@baseline("delta_rule", variant="fused", heavy_compile=True)
def ssm_fla_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Delta rule. Returns (B, N, H, V) in v's dtype."""
    from fla.ops.delta_rule import chunk_delta_rule

    out, _ = chunk_delta_rule(q, k, v, beta, scale=q.shape[-1] ** -0.5)
    return out
