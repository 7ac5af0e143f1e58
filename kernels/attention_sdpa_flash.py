"""PyTorch scaled_dot_product_attention forced onto the FlashAttention-2 backend (``sdpa_kernel``).

Form ``attention``: q, k, v (B, H, N, Dh) -> (B, H, N, Dh); dense (declines block sparsity). CUDA, fp16/bf16 only.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend

from bkbench.baselines.forms import baseline
from bkbench.registry import register
from kernels._attention_common import decline_sparse, reject_blocks, sdpa, sdpa_backend_available


@register(
    "attention_sdpa_flash",
    kind="attention",
    exact=True,
    devices=("cuda",),
    dtypes=(torch.bfloat16, torch.float16),
    differentiable=True,
    description="SDPA, FlashAttention-2 backend",
    supports=decline_sparse,
    available=sdpa_backend_available(torch.backends.cuda.is_flash_attention_available, "flash attention"),
)
@baseline("attention", variant="fused")
def attention_sdpa_flash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    block_keep: torch.Tensor | None = None,
    block_size: int | None = None,
) -> torch.Tensor:
    """SDPA (FlashAttention-2). Returns (B, H, N, Dh) in q's dtype."""
    reject_blocks(block_keep)
    return sdpa(q, k, v, causal, SDPBackend.FLASH_ATTENTION)
