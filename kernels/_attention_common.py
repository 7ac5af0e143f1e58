"""Shared pieces of the attention baselines (registers nothing).

Form ``attention`` (bkbench/baselines/forms.py): q, k, v (B, H, N, Dh), ``causal``, and the block-sparsity
entries ``block_keep`` / ``block_size`` (None for the dense kernels; FlexAttention's setup fills them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


def decline_sparse(case: Any) -> str | None:
    """``supports`` of the dense kernels: they compute every tile, so a sparse case is not theirs."""
    if getattr(case, "sparsity", 0.0):
        return "dense attention kernel: block sparsity s > 0 is measured with the attention_flex_* baselines"
    return None


def reject_blocks(block_keep: Any) -> None:
    if block_keep is not None:
        raise ValueError("block_keep: dense attention kernels take no block mask; use attention_flex_*")


def sdpa_backend_available(backend_flag: Callable[[], bool] | None, what: str) -> Callable[[], str | None]:
    """``available()`` for an SDPA backend: CUDA present and (when known) the backend compiled in."""

    def available() -> str | None:
        if not torch.cuda.is_available():
            return "needs CUDA"
        if backend_flag is not None and not backend_flag():
            return f"{what} is not available in this torch build"
        return None

    return available


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, backend: Any) -> torch.Tensor:
    """``scaled_dot_product_attention`` forced onto one backend (raises if that backend cannot run it)."""
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
