"""Pieces shared by the pivot-form implementations (``thomas``, ``assoc_scan``).

Notation (shared math notes): alpha_i = a_i - z, k_i = b_i c_i,
forward pivots  D_0 = alpha_0,      D_i = alpha_i - k_{i-1} / D_{i-1},
backward pivots E_{N-1} = alpha_{N-1}, E_i = alpha_i - k_i / E_{i+1},
G_i = 1 / (D_i + E_i - alpha_i).

Zero pivots. A pivot can be exactly zero for a non-singular matrix (a = [0, 1], b = c = 1, z = 0: D_0 = 0,
G = [-1, 0]); the next step then divides by zero and, in complex arithmetic, every later pivot is NaN. A pivot
D_i that comes out smaller than the rounding floor ``tiny = eps * (max|alpha| + 2 sqrt(max|k|))`` (per chain,
eps of the work dtype) while a coupling k_i != 0 follows it is replaced by ``tiny``: the result is that of a
perturbation of alpha_i by at most 2 tiny, i.e. of rounding size relative to the matrix, and G is accurate to
what the conditioning of T - zI allows. The last pivot of a coupled block (no coupling after it) is never
replaced: D = 0 there means det = 0, a singular matrix, and G stays non-finite. Backward pivots E mirrored.

The exact O(N) vector-Jacobian product (gradient w.r.t. a and z) uses two first-order linear recurrences
F_j = w_j + (k_{j-1}/D_{j-1}^2) F_{j-1} and R_j = w_j + (k_j/E_{j+1}^2) R_{j+1}, w = conj(grad_G):
S_j = G_j^2 (F_j + R_j - w_j), grad_a = -Re(S) (real a) or -conj(S) (complex a), grad_z = conj(sum_j S_j).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# (alpha, k) -> (D, E), both (B, N) complex
PivotFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# (coef, val, reverse) -> x with x_j = val_j + coef_j * x_{j-1} (forward; coef[:, 0] ignored) or
# x_j = val_j + coef_j * x_{j+1} (reverse; coef[:, -1] ignored); all (B, N) complex
RecurrenceFn = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


def complex_dtype(a: torch.Tensor) -> torch.dtype:
    """complex128 for float64/complex128 work, complex64 otherwise."""
    return torch.complex128 if a.dtype in (torch.float64, torch.complex128) else torch.complex64


def shifted_diagonal(a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """alpha = a - z as a (B, N) complex tensor (z: (B,))."""
    return a.to(complex_dtype(a)) - z.to(complex_dtype(a))[:, None]


def pivot_floor(alpha: torch.Tensor, k: torch.Tensor, uniform: bool) -> torch.Tensor:
    """The rounding floor ``tiny`` of the pivots, per chain: eps * (max|alpha| + 2 sqrt(max|k|)), (B, 1) real.

    alpha: (B, N) complex; k: (B, N-1) (stride-0 when ``uniform``). 0 for an all-zero chain (then singular)."""
    real = alpha.real.dtype
    scale = alpha.abs().amax(dim=1, keepdim=True)
    if k.shape[-1] > 0:
        kk = k[:, :1] if uniform else k
        scale = scale + 2.0 * kk.abs().amax(dim=1, keepdim=True).to(real).sqrt()
    return torch.finfo(real).eps * scale


def coupled(k: torch.Tensor, n: int, uniform: bool, side: str) -> torch.Tensor:
    """(B, N) bool: position i has a non-zero coupling to its right (k_i, ``side="right"``) or to its left
    (k_{i-1}, ``side="left"``); the chain ends have none on their outer side."""
    bsz = k.shape[0]
    out = torch.zeros((bsz, n), dtype=torch.bool, device=k.device)
    if n > 1:
        nz = (k[:, :1] != 0).expand(bsz, n - 1) if uniform else k != 0
        if side == "right":
            out[:, :-1] = nz
        else:
            out[:, 1:] = nz
    return out


def fix_scan_pivots(alpha: torch.Tensor, k: torch.Tensor, piv: torch.Tensor, tiny: torch.Tensor,
                    uniform: bool, reverse: bool) -> torch.Tensor:
    """Zero-pivot repair for pivots computed all at once (a scan), without a host sync (see module docstring).

    piv: (B, N) forward pivots D (``reverse=False``) or backward pivots E, as the scan gave them: a zero pivot
    followed by a coupling is replaced by ``tiny`` (B, 1), and the pivot after it (next in the recursion's
    direction), which the scan left infinite or NaN, is recomputed from the replaced one. Pivots further on are
    the scan's own: one step after a zero pivot the recursion forgets it (x -> alpha - k/x maps infinity to
    alpha), so they equal the perturbed matrix's to rounding."""
    n = piv.shape[1]
    if n == 1:
        return piv
    kk = (k[:, :1] if uniform else k).to(piv.dtype)
    side = "left" if reverse else "right"
    small = (piv.abs() < tiny) & coupled(k, n, uniform, side)
    fixed = torch.where(small, tiny.to(piv.dtype), piv)
    if reverse:  # E_i = alpha_i - k_i / E_{i+1}, i = 0..N-2
        redo = torch.zeros_like(small)
        redo[:, :-1] = small[:, 1:] | ~torch.isfinite(fixed[:, :-1])
        step = alpha[:, :-1] - kk / fixed[:, 1:]
        fixed[:, :-1] = torch.where(redo[:, :-1], step, fixed[:, :-1])
    else:  # D_i = alpha_i - k_{i-1} / D_{i-1}, i = 1..N-1
        redo = torch.zeros_like(small)
        redo[:, 1:] = small[:, :-1] | ~torch.isfinite(fixed[:, 1:])
        step = alpha[:, 1:] - kk / fixed[:, :-1]
        fixed[:, 1:] = torch.where(redo[:, 1:], step, fixed[:, 1:])
    return fixed


def green_from_pivots(alpha: torch.Tensor, d: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """G = 1 / (D + E - alpha), all (B, N) complex."""
    return torch.reciprocal(d + e - alpha)


def pivot_vjp(
    grad_g: torch.Tensor,
    k: torch.Tensor,
    d: torch.Tensor,
    e: torch.Tensor,
    g: torch.Tensor,
    recurrence: RecurrenceFn,
) -> torch.Tensor:
    """S_j = sum_i w_i G_ij G_ji with w = conj(grad_g): (B, N) complex. See module docstring.

    Conjugates are physical (``torch.conj_physical``), never the lazy conjugate bit: this also runs inside the
    ``bkbench::bk_core_backward`` operator, where PyTorch may dispatch below the Conjugate key, so a lazy ``.conj()``
    would be read unconjugated (seen under ``torch.compile(backend="aot_eager", dynamic=True)``)."""
    w = torch.conj_physical(grad_g)
    coef_f = torch.zeros_like(d)
    coef_b = torch.zeros_like(d)
    if d.shape[1] > 1:
        coef_f[:, 1:] = k / d[:, :-1].square()
        coef_b[:, :-1] = k / e[:, 1:].square()
    f = recurrence(coef_f, w, False)
    r = recurrence(coef_b, w, True)
    return g.square() * (f + r - w)


class PivotGreen(torch.autograd.Function):
    """G from pivots with the exact O(N) backward; generic over how pivots and recurrences are computed."""

    @staticmethod
    def forward(ctx, a, k, z, pivots: PivotFn, recurrence: RecurrenceFn):  # type: ignore[override]
        alpha = shifted_diagonal(a, z)
        d, e = pivots(alpha, k)
        g = green_from_pivots(alpha, d, e)
        ctx.save_for_backward(k, d, e, g)
        ctx.recurrence = recurrence
        ctx.a_complex = a.is_complex()
        ctx.a_dtype = a.dtype
        return g

    @staticmethod
    def backward(ctx, grad_g):  # type: ignore[override]
        k, d, e, g = ctx.saved_tensors
        s = pivot_vjp(grad_g, k, d, e, g, ctx.recurrence)
        grad_a = grad_z = None
        if ctx.needs_input_grad[0]:
            grad_a = (-torch.conj_physical(s) if ctx.a_complex else -s.real).to(ctx.a_dtype)
        if ctx.needs_input_grad[2]:
            grad_z = torch.conj_physical(s.sum(dim=1))
        return grad_a, None, grad_z, None, None


def sequential_recurrence(coef: torch.Tensor, val: torch.Tensor, reverse: bool) -> torch.Tensor:
    """x_j = val_j + coef_j x_{j-1} (or x_{j+1} when reverse), one step per position; (B, N) complex."""
    c = coef.transpose(0, 1).contiguous()
    v = val.transpose(0, 1).contiguous()
    x = torch.empty_like(v)
    n = v.shape[0]
    order = range(n - 1, -1, -1) if reverse else range(n)
    prev = None
    for j in order:
        if prev is None:
            x[j] = v[j]
        else:
            torch.addcmul(v[j], c[j], x[prev], out=x[j])
        prev = j
    return x.transpose(0, 1)


def explicit_vjp(pivots: PivotFn, recurrence: RecurrenceFn) -> Callable[..., tuple[Any, Any]]:
    """The registry record's ``vjp`` for a pivot-form implementation (``bkbench::bk_core``'s backward under
    ``torch.compile``): recompute D, E and G from the call's inputs, then :func:`pivot_vjp`; returns
    (grad_a (B, N) | None, grad_z (B,) | None)."""

    def vjp(args: Any, g: torch.Tensor, grad_g: torch.Tensor, need_a: bool, need_z: bool,
            **options: Any) -> tuple[Any, Any]:
        from bkbench.validate import working_a

        a = working_a(args, ())
        k = args.couplings()
        alpha = shifted_diagonal(a, args.shifts())
        d, e = pivots(alpha, k)
        s = pivot_vjp(grad_g.to(d.dtype), k, d, e, green_from_pivots(alpha, d, e), recurrence)
        grad_a = (-torch.conj_physical(s) if a.is_complex() else -s.real) if need_a else None
        return grad_a, (torch.conj_physical(s.sum(dim=1)) if need_z else None)

    return vjp
