"""FlexAttention with block-sparse masks (shared by attention_flex_local / attention_flex_random).

The setup (untimed) draws the keep-tiles for the case's sparsity s (``_block_sparsity.py``), builds
the ``BlockMask`` and puts ``block_keep``, ``block_size`` and ``block_mask`` into the inputs. On CUDA the
kernel is ``torch.compile(flex_attention)`` (a fused Triton kernel that skips masked tiles); on the CPU it
runs flex_attention eagerly, which materializes the scores: correct, but its CPU timings mean nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from bkbench.kernels.attention._block_sparsity import flex_block_mask, make_pattern

_COMPILED: dict[str, Callable[..., torch.Tensor]] = {}
CUDA_TILE_MULTIPLE = 128
RECOMPILE_LIMIT = 256
"""torch.compile specialises flex_attention on every (B, H, N, Dh, dtype, tile); dynamo's default of 8
recompiles per function would silently fall back to the unfused path during a sweep, so the first compile
raises the per-function limit to this (never lowers it)."""


def flex_available() -> str | None:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except Exception as exc:
        return f"torch.nn.attention.flex_attention unavailable: {exc}"
    return None


def flex_supports(case: Any) -> str | None:
    if getattr(case, "device", "") == "cpu" and getattr(case, "mode", "fwd") == "fwd+bwd":
        return "FlexAttention has no backward on the CPU (torch raises NotImplementedError); fwd+bwd on CUDA only"
    return None


def make_setup(pattern: str) -> Callable[[Any, dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """The ``setup`` of a flex baseline drawing ``pattern`` tiles ("random" or "local")."""

    def setup(case: Any, inputs: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        tile = int(options.get("tile", 128))
        if case.device == "cuda" and tile % CUDA_TILE_MULTIPLE:
            raise ValueError(
                f"tile: {tile} is not a multiple of {CUDA_TILE_MULTIPLE}; compiled FlexAttention on CUDA needs tiles "
                "divisible by its kernel blocks (an H100 rejected 32: 'Q and KV block size must be divisible by "
                "BLOCK_M and BLOCK_N'); use tile=128"
            )
        keep = make_pattern(pattern, case.N, tile, case.sparsity, case.causal, case.seed)
        out = dict(inputs)
        out["block_keep"] = keep.to(case.device)
        out["block_size"] = tile
        out["block_mask"] = flex_block_mask(keep, case.N, tile, case.causal, case.device)
        return out

    return setup


def _flex_fn(device: str) -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    if device != "cuda":
        return flex_attention
    if "cuda" not in _COMPILED:
        import torch._dynamo.config as dynamo_config

        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo_config, name):
                setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
        _COMPILED["cuda"] = torch.compile(flex_attention, dynamic=False)
    return _COMPILED["cuda"]


def run_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: Any) -> torch.Tensor:
    if block_mask is None:
        raise ValueError(
            "block_mask: FlexAttention baselines need their setup; build inputs with "
            "bkbench.harness.baselines.build_inputs(impl, case)"
        )
    fn = _flex_fn(q.device.type)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        return fn(q, k, v, block_mask=block_mask)
