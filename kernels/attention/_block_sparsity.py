"""Block-sparse attention patterns that match the suite's sparsity axis s.

The BK-core's sparsity s is the fraction of couplings set to zero. The matching notion for attention is the
fraction of (query block, key block) tiles that the dense kernel of the same causality would compute and the
block-sparse kernel skips:

    achieved_sparsity = 1 - kept_tiles / dense_tiles,
    dense_tiles = nb (nb + 1) / 2 (causal, square) or nq * nk (bidirectional).

Two patterns, both keeping every diagonal tile so that no query row is left without keys:

- ``random``: drop exactly ``round(s * dense_tiles)`` off-diagonal tiles chosen uniformly at random (seeded);
  the achieved sparsity equals s up to 1/dense_tiles, capped at the largest value that keeps the diagonal.
- ``local``: keep the tiles within a band of w tiles (0 <= qb - kb < w causal, |qb - kb| < w bidirectional),
  with w chosen so the achieved sparsity is as close to s as a band allows.

Patterns are (nq, nk) boolean tensors ("keep"); :func:`flex_block_mask` turns one into a FlexAttention
``BlockMask`` whose element mask is ``causal(i, j) & keep[i // bs, j // bs]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

PATTERNS = ("random", "local")


def n_blocks(n: int, block_size: int) -> int:
    """Number of tiles of ``block_size`` covering ``n`` positions (the last one may be partial)."""
    if block_size < 1:
        raise ValueError(f"block_size: expected a positive integer, got {block_size}")
    return -(-n // block_size)


def dense_tiles(nb: int, causal: bool) -> torch.Tensor:
    """(nb, nb) boolean: the tiles a dense kernel of this causality computes."""
    qb = torch.arange(nb)[:, None]
    kb = torch.arange(nb)[None, :]
    return (qb >= kb) if causal else torch.ones(nb, nb, dtype=torch.bool)


def achieved_sparsity(keep: torch.Tensor, causal: bool) -> float:
    """1 - kept / dense tiles (see module docstring)."""
    dense = dense_tiles(keep.shape[0], causal)
    return 1.0 - float((keep & dense).sum()) / float(dense.sum())


def random_pattern(nb: int, sparsity: float, causal: bool, seed: int) -> torch.Tensor:
    """Keep-tiles (nb, nb) with exactly round(s * dense_tiles) off-diagonal tiles dropped, at random."""
    _check_s(sparsity)
    dense = dense_tiles(nb, causal)
    keep = dense.clone()
    candidates = (dense & ~torch.eye(nb, dtype=torch.bool)).nonzero()
    n_drop = min(round(sparsity * float(dense.sum())), candidates.shape[0])
    if n_drop:
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(candidates.shape[0], generator=gen)[:n_drop]
        keep[candidates[pick, 0], candidates[pick, 1]] = False
    return keep


def local_pattern(nb: int, sparsity: float, causal: bool) -> torch.Tensor:
    """Keep-tiles (nb, nb) of a band of width w, w chosen so the achieved sparsity is closest to s."""
    _check_s(sparsity)
    qb = torch.arange(nb)[:, None]
    kb = torch.arange(nb)[None, :]
    best: tuple[float, torch.Tensor] | None = None
    for w in range(1, nb + 1):
        keep = ((qb - kb >= 0) & (qb - kb < w)) if causal else ((qb - kb).abs() < w)
        gap = abs(achieved_sparsity(keep, causal) - sparsity)
        if best is None or gap < best[0] - 1e-12:
            best = (gap, keep)
    assert best is not None
    return best[1]


def make_pattern(pattern: str, n: int, block_size: int, sparsity: float, causal: bool, seed: int) -> torch.Tensor:
    """The keep-tiles of ``pattern`` ("random" or "local") for a length-``n`` sequence."""
    nb = n_blocks(n, block_size)
    if pattern == "random":
        return random_pattern(nb, sparsity, causal, seed)
    if pattern == "local":
        return local_pattern(nb, sparsity, causal)
    raise ValueError(f"pattern: {pattern!r} is not one of {PATTERNS}")


def mask_mod_for(keep: torch.Tensor, block_size: int, causal: bool) -> Callable[..., Any]:
    """FlexAttention ``mask_mod(b, h, q_idx, kv_idx)``: causal (if asked) and ``keep`` at tile level."""

    def mask_mod(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        allowed = keep[q_idx // block_size, kv_idx // block_size]
        return (allowed & (q_idx >= kv_idx)) if causal else allowed

    return mask_mod


def flex_block_mask(keep: torch.Tensor, n: int, block_size: int, causal: bool, device: str) -> Any:
    """A FlexAttention ``BlockMask`` for a (n x n) attention with this keep pattern (broadcast over B, H)."""
    from torch.nn.attention.flex_attention import create_block_mask

    keep = keep.to(device)
    return create_block_mask(
        mask_mod_for(keep, block_size, causal), None, None, n, n, device=device, BLOCK_SIZE=block_size
    )


def block_mask_tiles(block_mask: Any) -> int:
    """Number of (q, kv) tiles a ``BlockMask`` visits (partial + full), summed over its (B, H) broadcast."""
    total = block_mask.kv_num_blocks.sum()
    if getattr(block_mask, "full_kv_num_blocks", None) is not None:
        total = total + block_mask.full_kv_num_blocks.sum()
    return int(total)


def _check_s(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: expected a number in [0, 1), got {sparsity}")
