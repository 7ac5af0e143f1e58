"""Mamba-1 selective scan: the sequential PyTorch reference (one Python step per token).

Form ``selective_scan`` (see bkbench/baselines/forms.py): u, delta, z (B, d, N); A (d, n); B, C (B, n, N);
D, delta_bias (d,). Computes in float32 (float64 for float64 input) and returns u's dtype, like Mamba's own
``selective_scan_ref``. Memory O(B·d·n) beyond the inputs: the state is updated in place of a new tensor
each step, nothing of size N·n is stored (autograd still saves one state per step in fwd+bwd).
"""

from __future__ import annotations

import torch

from bkbench.baselines.forms import baseline
from bkbench.baselines.references import selective_scan_sequential
from bkbench.registry import register

MAX_N = 8192


def _supports(case: object) -> str | None:
    n = getattr(case, "N", 0)
    if n > MAX_N:
        return f"sequential Python loop over N: declined above N={MAX_N} (N={n}); time the parallel scan"
    return None


@register(
    "ssm_selective_scan_ref",
    kind="ssm",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.bfloat16, torch.float16),
    differentiable=True,
    baseline=True,
    description="Mamba-1 selective scan, sequential PyTorch loop over N (reference)",
    supports=_supports,
)
@baseline("selective_scan", variant="sequential")
def ssm_selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan, sequential. Returns (B, d, N) in u's dtype."""
    cd = torch.float64 if u.dtype == torch.float64 else torch.float32
    return selective_scan_sequential(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dtype=cd).to(u.dtype)
