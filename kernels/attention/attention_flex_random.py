"""FlexAttention with a random block-sparse mask: exactly round(s * dense_tiles) off-diagonal tiles
dropped, chosen with the case seed (every diagonal tile is kept).

Form ``attention``: q, k, v (B, H, N, Dh) -> (B, H, N, Dh); the mask is causal(i, j) & keep[i // tile, j // tile]
with tiles of ``tile`` (128) tokens. At s = 0 this is dense causal FlexAttention.
"""

from __future__ import annotations

from typing import Any

import torch
from bkbench.kernels.attention._flex_common import flex_available, flex_supports, make_setup, run_flex

from bkbench.baseline_meta import baseline
from bkbench.registry import register


@register(
    "attention_flex_random",
    kind="attention",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.bfloat16),
    differentiable=True,
    description="FlexAttention (compiled on CUDA), random block-sparse mask at sparsity s",
    defaults={"tile": 128},
    available=flex_available,
    supports=flex_supports,
)
@baseline("attention", variant="fused", heavy_compile=True, setup=make_setup("random"))
def attention_flex_random(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    block_keep: torch.Tensor | None = None,
    block_size: int | None = None,
    block_mask: Any = None,
    tile: int = 128,
) -> torch.Tensor:
    """Block-sparse attention. ``block_mask`` comes from the setup; ``tile`` is read by the setup only."""
    return run_flex(q, k, v, block_mask)
