"""PyTorch ``scaled_dot_product_attention`` forced onto one backend each (``sdpa_kernel``): four registry records.

Form ``attention``: q, k, v (B, H, N, Dh) -> (B, H, N, Dh) in q's dtype; dense (they decline block sparsity;
the ``attention_flex_*`` baselines measure it).

| record | backend | devices | dtypes |
|---|---|---|---|
| ``attention_sdpa_flash`` | FlashAttention-2 | CUDA | fp16, bf16 |
| ``attention_sdpa_efficient`` | memory-efficient (xFormers-style) | CUDA | fp32, bf16, fp16 |
| ``attention_sdpa_cudnn`` | cuDNN | CUDA | fp16, bf16 |
| ``attention_sdpa_math`` | math (ATen composite; materialises N x N scores) | CPU, CUDA | fp32, fp64, bf16, fp16 |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from bkbench.baseline_meta import baseline
from bkbench.kernels.attention._attention_common import decline_sparse, reject_blocks
from bkbench.registry import register

HALF = (torch.bfloat16, torch.float16)


def backend_available(backend_flag: Callable[[], bool] | None, what: str) -> Callable[[], str | None]:
    """``available()`` for a CUDA-only SDPA backend: CUDA present and (when known) the backend compiled in."""

    def available() -> str | None:
        if not torch.cuda.is_available():
            return "needs CUDA"
        if backend_flag is not None and not backend_flag():
            return f"{what} is not available in this torch build"
        return None

    return available


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, block_keep: Any,
         backend: Any) -> torch.Tensor:
    """``scaled_dot_product_attention`` on ``backend`` (raises if that backend cannot run these inputs)."""
    from torch.nn.attention import sdpa_kernel

    reject_blocks(block_keep)
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


@register("attention_sdpa_flash", kind="attention", exact=True, devices=("cuda",), dtypes=HALF, differentiable=True,
          description="SDPA, FlashAttention-2 backend", supports=decline_sparse,
          available=backend_available(torch.backends.cuda.is_flash_attention_available, "flash attention"))
@baseline("attention", variant="fused")
def attention_sdpa_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                         block_keep: torch.Tensor | None = None, block_size: int | None = None) -> torch.Tensor:
    """SDPA (FlashAttention-2)."""
    return sdpa(q, k, v, causal, block_keep, SDPBackend.FLASH_ATTENTION)


@register("attention_sdpa_efficient", kind="attention", exact=True, devices=("cuda",),
          dtypes=(torch.float32, *HALF), differentiable=True,
          description="SDPA, memory-efficient (xFormers-style) backend", supports=decline_sparse,
          available=backend_available(None, "memory-efficient attention"))
@baseline("attention", variant="fused")
def attention_sdpa_efficient(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                             block_keep: torch.Tensor | None = None, block_size: int | None = None) -> torch.Tensor:
    """SDPA (memory-efficient)."""
    return sdpa(q, k, v, causal, block_keep, SDPBackend.EFFICIENT_ATTENTION)


@register("attention_sdpa_cudnn", kind="attention", exact=True, devices=("cuda",), dtypes=HALF, differentiable=True,
          description="SDPA, cuDNN backend", supports=decline_sparse,
          available=backend_available(torch.backends.cudnn.is_available, "cuDNN"))
@baseline("attention", variant="fused")
def attention_sdpa_cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                         block_keep: torch.Tensor | None = None, block_size: int | None = None) -> torch.Tensor:
    """SDPA (cuDNN)."""
    return sdpa(q, k, v, causal, block_keep, SDPBackend.CUDNN_ATTENTION)


@register("attention_sdpa_math", kind="attention", exact=True, devices=("cpu", "cuda"),
          dtypes=(torch.float32, torch.float64, *HALF), differentiable=True,
          description="SDPA, math (reference C++/ATen composite) backend", supports=decline_sparse, available=None)
@baseline("attention", variant="materialized")
def attention_sdpa_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                        block_keep: torch.Tensor | None = None, block_size: int | None = None) -> torch.Tensor:
    """SDPA (math)."""
    return sdpa(q, k, v, causal, block_keep, SDPBackend.MATH)
