"""Naive attention: the (N x N) score matrix is materialized, softmax in float32, then multiplied by V.

Form ``attention``: q, k, v (B, H, N, Dh) -> (B, H, N, Dh). Memory O(B·H·N²): the first baseline to run
out of memory as N grows.
"""

from __future__ import annotations

import math

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.attention._attention_common import decline_sparse, reject_blocks
from bkbench.registry import register


@register(
    "attention_naive",
    kind="attention",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.bfloat16, torch.float16),
    differentiable=True,
    baseline=True,
    description="softmax(QK^T/sqrt(d))V with the N x N scores materialized",
    supports=decline_sparse,
)
@baseline("attention", variant="materialized")
def attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    block_keep: torch.Tensor | None = None,
    block_size: int | None = None,
) -> torch.Tensor:
    """Materialized attention. Returns (B, H, N, Dh) in q's dtype."""
    reject_blocks(block_keep)
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        n_q, n_k = q.shape[-2], k.shape[-2]
        keep = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    sm_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    probs = torch.softmax(scores, dim=-1, dtype=sm_dtype).to(q.dtype)
    return probs @ v
