"""``assoc_scan``: pivots from prefix products of normalised 2x2 Möbius matrices, log-depth scan.

Each pivot step x -> alpha_i - k_{i-1}/x is the Möbius map of M_i = [[alpha_i, -k_{i-1}], [1, 0]]
(k_{-1} = 0). With P_i = M_i ... M_0, D_i = (P_i)_00 / (P_i)_10; backward, Q_i = N_i ... N_{N-1} with
N_i = [[alpha_i, -k_i], [1, 0]] (k_{N-1} = 0) and E_i = (Q_i)_00 / (Q_i)_10. Products are formed by a
Hillis–Steele scan (ceil(log2 N) rounds, O(N log N) work); every combine divides by its largest entry, which
leaves the ratios unchanged and removes overflow at any N. The backward pass (gradient w.r.t. a and z) runs
the two linear recurrences as log-depth scans too.
"""

from __future__ import annotations

import torch

from bkbench.kernels.bk._pivot_common import PivotGreen, explicit_vjp, fix_scan_pivots, pivot_floor
from bkbench.registry import is_uniform, register

Mat = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # entries 00, 01, 10, 11, each (B, L)


def _normalise(m: Mat) -> Mat:
    scale = torch.stack([torch.maximum(x.real.abs(), x.imag.abs()) for x in m]).amax(dim=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return tuple(x / scale for x in m)  # type: ignore[return-value]


def _matmul(p: Mat, q: Mat) -> Mat:
    """Entry-wise batched 2x2 product p @ q."""
    p00, p01, p10, p11 = p
    q00, q01, q10, q11 = q
    return (p00 * q00 + p01 * q10, p00 * q01 + p01 * q11, p10 * q00 + p11 * q10, p10 * q01 + p11 * q11)


def _scan(m: Mat, reverse: bool) -> Mat:
    """Inclusive scan: forward gives M_i ... M_0 at i; reverse gives M_i ... M_{L-1} at i."""
    n = m[0].shape[1]
    step = 1
    while step < n:
        if reverse:  # Q_i <- Q_i @ Q_{i+step}
            head = _normalise(_matmul(tuple(x[:, :-step] for x in m), tuple(x[:, step:] for x in m)))
            m = tuple(torch.cat([h, x[:, -step:]], dim=1) for h, x in zip(head, m))  # type: ignore[assignment]
        else:  # P_i <- P_i @ P_{i-step}
            tail = _normalise(_matmul(tuple(x[:, step:] for x in m), tuple(x[:, :-step] for x in m)))
            m = tuple(torch.cat([x[:, :step], t], dim=1) for t, x in zip(tail, m))  # type: ignore[assignment]
        step *= 2
    return m


def scan_pivots(alpha: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward pivots D, E of shape (B, N) from alpha (B, N) and k (B, N-1)."""
    bsz, n = alpha.shape
    kk = k.to(alpha.dtype)
    zero = torch.zeros((bsz, 1), dtype=alpha.dtype, device=alpha.device)
    one = torch.ones_like(alpha)
    zeros = torch.zeros_like(alpha)
    fwd = _scan(_normalise((alpha, -torch.cat([zero, kk], dim=1), one, zeros)), reverse=False)
    bwd = _scan(_normalise((alpha, -torch.cat([kk, zero], dim=1), one, zeros)), reverse=True)
    # a zero pivot inside a coupled block: rounding-floor replacement, vectorised (kernels/bk/_pivot_common.py)
    uniform = is_uniform(k)
    tiny = pivot_floor(alpha, k, uniform)
    d = fix_scan_pivots(alpha, k, fwd[0] / fwd[2], tiny, uniform, reverse=False)
    e = fix_scan_pivots(alpha, k, bwd[0] / bwd[2], tiny, uniform, reverse=True)
    return d, e


def scan_recurrence(coef: torch.Tensor, val: torch.Tensor, reverse: bool) -> torch.Tensor:
    """x_j = val_j + coef_j x_{j-1} (x_{j+1} when reverse) by a log-depth scan of affine maps; (B, N)."""
    if reverse:
        return scan_recurrence(coef.flip(1), val.flip(1), False).flip(1)
    mul = coef.clone()
    mul[:, 0] = 0
    add = val.clone()
    n = val.shape[1]
    step = 1
    while step < n:
        # (mul_j, add_j) <- (mul_j mul_{j-step}, add_j + mul_j add_{j-step})
        new_add = torch.addcmul(add[:, step:], mul[:, step:], add[:, :-step])
        new_mul = mul[:, step:] * mul[:, :-step]
        add = torch.cat([add[:, :step], new_add], dim=1)
        mul = torch.cat([mul[:, :step], new_mul], dim=1)
        step *= 2
    return add


@register(
    "assoc_scan",
    kind="bk",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128),
    differentiable=True,
    description="normalised 2x2 Möbius prefix products, Hillis-Steele log-depth scan both ways",
    vjp=explicit_vjp(scan_pivots, scan_recurrence),
    fallback_rank={"cuda": 1, "cpu": 1},
)
def assoc_scan(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128."""
    return PivotGreen.apply(a, k, z, scan_pivots, scan_recurrence)
