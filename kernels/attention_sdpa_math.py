"""PyTorch scaled_dot_product_attention forced onto the math (reference C++/ATen composite) backend (``sdpa_kernel``).

Form ``attention``: q, k, v (B, H, N, Dh) -> (B, H, N, Dh); dense (declines block sparsity).
Any device and dtype; materializes the N x N scores.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend

from bkbench.baselines.forms import baseline
from bkbench.registry import register
from kernels._attention_common import decline_sparse, reject_blocks, sdpa


@register(
    "attention_sdpa_math",
    kind="attention",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.bfloat16, torch.float16),
    differentiable=True,
    description="SDPA, math (reference C++/ATen composite) backend",
    supports=decline_sparse,
    available=None,
)
@baseline("attention", variant="materialized")
def attention_sdpa_math(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    block_keep: torch.Tensor | None = None,
    block_size: int | None = None,
) -> torch.Tensor:
    """SDPA (math (reference C++/ATen composite)). Returns (B, H, N, Dh) in q's dtype."""
    reject_blocks(block_keep)
    return sdpa(q, k, v, causal, SDPBackend.MATH)
