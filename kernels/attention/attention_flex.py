"""FlexAttention with a block-sparse mask at sparsity s: two registry records, one per keep-pattern
(tiles of ``tile`` = 128 tokens):

- ``attention_flex_local``: the band of w tiles (0 <= q_tile - k_tile < w) whose tile count is closest to
  (1 - s) times the dense tile count;
- ``attention_flex_random``: exactly round(s * dense_tiles) off-diagonal tiles dropped, chosen with the case
  seed (every diagonal tile is kept).

Form ``attention``: q, k, v (B, H, N, Dh) -> (B, H, N, Dh); the mask is causal(i, j) & keep[i // tile, j // tile].
At s = 0 both are dense causal FlexAttention. The setup (untimed) builds the block mask (``_flex_common``).
"""

from __future__ import annotations

from typing import Any

import torch

from bkbench.baseline_meta import baseline
from bkbench.kernels.attention._flex_common import flex_available, flex_supports, make_setup, run_flex
from bkbench.registry import register

RECORD = {"kind": "attention", "exact": True, "devices": ("cpu", "cuda"), "dtypes": (torch.float32, torch.bfloat16),
          "differentiable": True, "defaults": {"tile": 128}, "available": flex_available, "supports": flex_supports}


@register("attention_flex_local", description="FlexAttention (compiled on CUDA), local block-sparse mask at sparsity s",
          **RECORD)
@baseline("attention", variant="fused", heavy_compile=True, setup=make_setup("local"))
def attention_flex_local(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                         block_keep: torch.Tensor | None = None, block_size: int | None = None,
                         block_mask: Any = None, tile: int = 128) -> torch.Tensor:
    """Block-sparse attention. ``block_mask`` comes from the setup; ``tile`` is read by the setup only."""
    return run_flex(q, k, v, block_mask)


@register("attention_flex_random",
          description="FlexAttention (compiled on CUDA), random block-sparse mask at sparsity s", **RECORD)
@baseline("attention", variant="fused", heavy_compile=True, setup=make_setup("random"))
def attention_flex_random(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                          block_keep: torch.Tensor | None = None, block_size: int | None = None,
                          block_mask: Any = None, tile: int = 128) -> torch.Tensor:
    """Block-sparse attention. ``block_mask`` comes from the setup; ``tile`` is read by the setup only."""
    return run_flex(q, k, v, block_mask)
