"""``Case``: one benchmark point for a baseline, described by the shared axes (B, N, d, dtype, sparsity, mode).

The same ``(B, N, d)`` names the BK-core problem (B·d chains of length N), the selective scan over
``(B, d, N)`` and attention with ``d/64`` heads of size 64 (see :mod:`bkbench.harness.baselines.equal_work`). A case
knows nothing about any implementation; builders (:mod:`bkbench.harness.baselines.forms`) turn it into tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

MODES = ("fwd", "fwd+bwd")
DEVICES = ("cpu", "cuda")
DTYPE_NAMES = {
    torch.float64: "fp64",
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
}
DTYPE_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()} | {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.bfloat16`` or one of ``"fp64" "fp32" "bf16" "fp16"`` (or the long names) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype: {dtype} is not supported; use one of {sorted(DTYPE_BY_NAME)}")
        return dtype
    if isinstance(dtype, str) and dtype in DTYPE_BY_NAME:
        return DTYPE_BY_NAME[dtype]
    raise ValueError(f"dtype: {dtype!r} is not supported; use one of {sorted(DTYPE_BY_NAME)}")


@dataclass(frozen=True)
class Case:
    """One benchmark point shared by all baselines.

    Attributes:
        B: batch size (sequences).
        N: sequence length (tokens).
        d: model width (channels). Attention uses ``d // head_dim`` heads, so ``d`` must be a multiple of
            ``head_dim`` for attention and the SSD/GLA forms.
        dtype: activation dtype (fp64/fp32/bf16/fp16). SSM parameters (A, D, delta_bias, gates) stay fp32,
            as in Mamba.
        device: ``"cpu"`` or ``"cuda"``.
        sparsity: fraction s in [0, 1) of attention blocks removed by the block-sparse masks (FlexAttention);
            dense baselines decline s > 0.
        mode: ``"fwd"`` or ``"fwd+bwd"`` (forward plus backward w.r.t. every activation input).
        seed: seed of every random input.
        state: SSM state size n; ``None`` means the form's default (Mamba-1: 16, Mamba-2 SSD: 128, GLA: the
            key dim = head_dim).
        head_dim: attention / SSD / GLA head size (64).
        causal: causal attention mask (the SSMs are causal by construction).
    """

    B: int
    N: int
    d: int
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    sparsity: float = 0.0
    mode: str = "fwd"
    seed: int = 0
    state: int | None = None
    head_dim: int = 64
    causal: bool = True

    def __post_init__(self) -> None:
        for name in ("B", "N", "d", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        object.__setattr__(self, "dtype", as_dtype(self.dtype))
        if self.device not in DEVICES:
            raise ValueError(f"device: {self.device!r} is not supported; use 'cpu' or 'cuda'")
        if not (isinstance(self.sparsity, (int, float)) and 0.0 <= float(self.sparsity) < 1.0):
            raise ValueError(f"sparsity: expected a number in [0, 1), got {self.sparsity!r}")
        object.__setattr__(self, "sparsity", float(self.sparsity))
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {MODES}")
        if self.state is not None and (not isinstance(self.state, int) or self.state < 1):
            raise ValueError(f"state: expected a positive integer or None, got {self.state!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}")

    @property
    def heads(self) -> int:
        """Number of heads ``d // head_dim``; raises ValueError when ``d`` is not a multiple of ``head_dim``."""
        if self.d % self.head_dim:
            raise ValueError(
                f"d: {self.d} is not a multiple of head_dim={self.head_dim}; the attention/SSD/GLA mapping uses "
                f"d/head_dim heads, so pick d = k*{self.head_dim}"
            )
        return self.d // self.head_dim

    @property
    def requires_grad(self) -> bool:
        return self.mode == "fwd+bwd"

    @property
    def key(self) -> str:
        """Self-describing name, e.g. ``B8_N4096_d1024_bf16_s0.5_fwd+bwd_seed0``."""
        parts = [f"B{self.B}", f"N{self.N}", f"d{self.d}", DTYPE_NAMES[self.dtype]]
        if self.sparsity:
            parts.append(f"s{self.sparsity:g}")
        if self.state is not None:
            parts.append(f"n{self.state}")
        if self.head_dim != 64:
            parts.append(f"hd{self.head_dim}")
        if not self.causal:
            parts.append("bidir")
        parts += [self.mode, f"seed{self.seed}"]
        return "_".join(parts)

    def with_(self, **changes: object) -> Case:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]
