"""``thomas``: the LU/UL pivot form (Thomas algorithm, Meurant 1992), one sequential step per position.

Forward pivots D and backward pivots E are each a loop over N, vectorised over the B chains;
G_i = 1 / (D_i + E_i - alpha_i). No overflow for any N. Exact O(N) backward (F/R recurrences).
"""

from __future__ import annotations

import torch

from bkbench.registry import is_uniform, register
from kernels._pivot_common import PivotGreen, explicit_vjp, sequential_recurrence


def thomas_pivots(alpha: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward pivots D, E of shape (B, N) from alpha (B, N) and k (B, N-1), by loops."""
    al = alpha.transpose(0, 1).contiguous()  # (N, B): each step touches one contiguous row
    n = al.shape[0]
    kk = k[:1, :1].reshape(()).to(al.dtype) if is_uniform(k) else k.transpose(0, 1).contiguous().to(al.dtype)
    uniform = kk.dim() == 0
    d = torch.empty_like(al)
    e = torch.empty_like(al)
    tmp = torch.empty_like(al[0])
    d[0] = al[0]
    for i in range(1, n):
        torch.div(kk if uniform else kk[i - 1], d[i - 1], out=tmp)
        torch.sub(al[i], tmp, out=d[i])
    e[n - 1] = al[n - 1]
    for i in range(n - 2, -1, -1):
        torch.div(kk if uniform else kk[i], e[i + 1], out=tmp)
        torch.sub(al[i], tmp, out=e[i])
    return d.transpose(0, 1), e.transpose(0, 1)


@register(
    "thomas",
    kind="bk",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128),
    differentiable=True,
    baseline=True,
    description="LU/UL pivot form, sequential loop over N (vectorised over chains), exact O(N) backward",
    vjp=explicit_vjp(thomas_pivots, sequential_recurrence),
)
def thomas(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128."""
    return PivotGreen.apply(a, k, z, thomas_pivots, sequential_recurrence)
