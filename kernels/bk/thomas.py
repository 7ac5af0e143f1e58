"""``thomas``: the LU/UL pivot form (Thomas algorithm, Meurant 1992), one sequential step per position.

Forward pivots D and backward pivots E are each a loop over N, vectorised over the B chains;
G_i = 1 / (D_i + E_i - alpha_i). No overflow for any N. Exact O(N) backward (F/R recurrences).
"""

from __future__ import annotations

import torch

from bkbench.kernels.bk._pivot_common import PivotGreen, coupled, explicit_vjp, pivot_floor, sequential_recurrence
from bkbench.registry import is_uniform, register


def _sweep(al: torch.Tensor, kk: torch.Tensor, reverse: bool, fix: torch.Tensor | None = None) -> torch.Tensor:
    """Pivots of one direction, (N, B): forward D_i = al_i - kk_{i-1} / D_{i-1} from D_0 = al_0, or (``reverse``)
    E_i = al_i - kk_i / E_{i+1} from E_{N-1} = al_{N-1}. al (N, B) complex; kk (N-1, B) or 0-d (uniform).
    With ``fix`` (N, B) complex: a pivot whose modulus is below |fix_i| is replaced by fix_i (0 leaves it)."""
    n = al.shape[0]
    uniform = kk.dim() == 0
    out = torch.empty_like(al)
    tmp = torch.empty_like(al[0])
    prev = None
    for i in range(n - 1, -1, -1) if reverse else range(n):
        if prev is None:
            out[i] = al[i]
        else:
            torch.div(kk if uniform else kk[min(i, prev)], out[prev], out=tmp)
            torch.sub(al[i], tmp, out=out[i])
        if fix is not None:
            torch.where(out[i].abs() < fix[i].real, fix[i], out[i], out=out[i])
        prev = i
    return out


def guard_every_chain(al: torch.Tensor) -> bool:
    """True where deciding which chains need the guard would cost a host synchronisation (CUDA tensors)."""
    return al.is_cuda


def thomas_pivots(alpha: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward pivots D, E of shape (B, N) from alpha (B, N) and k (B, N-1), by loops.

    On the CPU the loops run unguarded and only chains whose last pivot came out non-finite are run again with the
    zero-pivot guard of kernels/bk/_pivot_common.py (a pivot below the rounding floor, followed by a coupling, is
    replaced by the floor): deciding that reads a value, which on CUDA would be a host synchronisation, so there
    (:func:`guard_every_chain`) every chain runs the guarded loops (twice the ops, no synchronisation, capturable in
    a CUDA graph)."""
    al = alpha.transpose(0, 1).contiguous()  # (N, B): each step touches one contiguous row
    uniform = is_uniform(k)
    kk = k[:1, :1].reshape(()).to(al.dtype) if uniform else k.transpose(0, 1).contiguous().to(al.dtype)
    if guard_every_chain(al):
        # no host synchronisation (CUDA): every chain runs the guarded loops, which leave a pivot above the
        # rounding floor unchanged (the same result as the unguarded loop wherever that one has no breakdown)
        tiny = pivot_floor(alpha, k, uniform).to(al.dtype)
        fix_d = torch.where(coupled(k, al.shape[0], uniform, "right"), tiny, 0).transpose(0, 1).contiguous()
        fix_e = torch.where(coupled(k, al.shape[0], uniform, "left"), tiny, 0).transpose(0, 1).contiguous()
        d = _sweep(al, kk, reverse=False, fix=fix_d)
        e = _sweep(al, kk, reverse=True, fix=fix_e)
        return d.transpose(0, 1), e.transpose(0, 1)
    d = _sweep(al, kk, reverse=False)
    e = _sweep(al, kk, reverse=True)
    # in this recursion a breakdown never heals: after a zero pivot the next one is inf + NaN j (complex 1 / 0) and
    # every later one NaN, so the last pivot of each direction tells (O(B) work, not O(N B))
    bad = ~(torch.isfinite(d[-1]) & torch.isfinite(e[0]))  # (B,)
    if bool(bad.any()):
        idx = bad.nonzero().squeeze(1)
        tiny = pivot_floor(alpha[idx], k[idx], uniform).to(al.dtype)  # (b, 1)
        k_sub = k[idx]
        fix_d = torch.where(coupled(k_sub, al.shape[0], uniform, "right"), tiny, 0).transpose(0, 1)
        fix_e = torch.where(coupled(k_sub, al.shape[0], uniform, "left"), tiny, 0).transpose(0, 1)
        al_sub = al[:, idx]
        kk_sub = kk if uniform else kk[:, idx]
        d[:, idx] = _sweep(al_sub, kk_sub, reverse=False, fix=fix_d.contiguous())
        e[:, idx] = _sweep(al_sub, kk_sub, reverse=True, fix=fix_e.contiguous())
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
    fallback_rank={"cuda": 2, "cpu": 0},
)
def thomas(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128."""
    return PivotGreen.apply(a, k, z, thomas_pivots, sequential_recurrence)
