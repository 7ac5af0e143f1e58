"""Mamba-1 selective scan: the sequential PyTorch reference (one Python step per token).

Form ``selective_scan`` (see bkbench/harness/baselines/forms.py): u, delta, z (B, d, N); A (d, n); B, C (B, n, N);
D, delta_bias (d,). Computes in float32 (float64 for float64 input) and returns u's dtype, like Mamba's own
``selective_scan_ref``. Memory O(B·d·n) beyond the inputs: the state is updated in place of a new tensor
each step, nothing of size N·n is stored (autograd still saves one state per step in fwd+bwd).
:func:`selective_scan_sequential` is also the harness's float64 reference of the form (in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bkbench.baseline_meta import baseline
from bkbench.registry import register

MAX_N = 8192


def selective_scan_sequential(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Mamba-1 selective scan, one step per position, computed in ``dtype``.

    Shapes: u, delta, z (batch, d, N); A (d, n) real; B, C (batch, n, N); D, delta_bias (d,).
    With dt = softplus(delta + delta_bias) (or delta + delta_bias):
        x_t = exp(dt_t * A) * x_{t-1} + dt_t * B_t * u_t      (x_t: (batch, d, n))
        y_t = <C_t, x_t> + D * u_t,   out = y * silu(z)
    Returns (batch, d, N) in ``dtype``.
    """
    u, delta, A, B, C, D, z, delta_bias = (
        None if t is None else t.to(dtype) for t in (u, delta, A, B, C, D, z, delta_bias)
    )
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d, n_len = u.shape
    x = u.new_zeros(batch, d, A.shape[1])
    ys = []
    for t in range(n_len):
        dt = delta[:, :, t, None]
        x = torch.exp(dt * A) * x + dt * B[:, None, :, t] * u[:, :, t, None]
        ys.append((x * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, d, 0)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


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
