"""Shared pieces of the attention baselines (registers nothing).

Form ``attention`` (bkbench/harness/baselines/forms.py): q, k, v (B, H, N, Dh), ``causal``, and the block-sparsity
entries ``block_keep`` / ``block_size`` (None for the dense kernels; FlexAttention's setup fills them).
"""

from __future__ import annotations

from typing import Any


def decline_sparse(case: Any) -> str | None:
    """``supports`` of the dense kernels: they compute every tile, so a sparse case is not theirs."""
    if getattr(case, "sparsity", 0.0):
        return "dense attention kernel: block sparsity s > 0 is measured with the attention_flex_* baselines"
    return None


def reject_blocks(block_keep: Any) -> None:
    if block_keep is not None:
        raise ValueError("block_keep: dense attention kernels take no block mask; use attention_flex_*")
