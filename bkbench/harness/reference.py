"""Float64 references for the BK-core.

``dense_reference``: the diagonal of the inverse of the dense (N x N) matrix T - zI, complex128 — the
definition itself, O(N^3) per chain, used for N <= ``DENSE_MAX_N``.
``pivot_reference``: the LU/UL pivot form in numpy complex128, O(N) per chain, for any N. It is written
independently of ``kernels/bk/thomas.py`` (numpy, chain-minor loop, pivots as scaled pairs instead of quotients) so
the two do not share a bug, and it has no zero-pivot breakdown.
``pivot_grad_reference`` / ``pivot_sensitivity``: the backward pass's exact O(N) recurrences in float64.
This is the one float64 pivot recurrence of the project: the checks of the workloads and of the tuner use it.
"""

from __future__ import annotations

import numpy as np
import torch

from bkbench.harness.problems import Inputs

DENSE_MAX_N = 256


def _as_f64(inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """a (B, N), b (B, N-1), c (B, N-1), z (B,) as CPU complex128, leading dims flattened (autograd-safe)."""
    a = inputs.a.to("cpu").to(torch.complex128)
    lead, n = a.shape[:-1], a.shape[-1]
    bsz = int(np.prod(lead)) if lead else 1
    a = a.reshape(bsz, n)

    def off(x: torch.Tensor | float) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            return x.to("cpu").to(torch.complex128).reshape(bsz, n - 1)
        val = complex(x.item() if isinstance(x, torch.Tensor) else x)
        return torch.full((bsz, n - 1), val, dtype=torch.complex128)

    z = inputs.z
    if isinstance(z, torch.Tensor):
        zt = z.to("cpu").to(torch.complex128)
    else:
        zt = torch.tensor(complex(z), dtype=torch.complex128)
    zt = torch.broadcast_to(zt, lead).reshape(bsz)
    return a, off(inputs.b), off(inputs.c), zt


def dense_reference(inputs: Inputs) -> torch.Tensor:
    """diag((T - zI)^-1) by a dense float64 inverse; returns complex128 of shape a.shape (CPU)."""
    a, b, c, z = _as_f64(inputs)
    n = a.shape[1]
    t = torch.diag_embed(a - z[:, None]) + torch.diag_embed(b, 1) + torch.diag_embed(c, -1)
    g = torch.linalg.inv(t).diagonal(dim1=-2, dim2=-1)
    return g.reshape(inputs.a.shape[:-1] + (n,))


def _projective_pivots(alpha: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pivots as pairs: D_i = p_i / q_i with (p_0, q_0) = (alpha_0, 1) and (p_i, q_i) = (alpha_i p_{i-1} -
    k_{i-1} q_{i-1}, p_{i-1}) scaled by 1 / max(|p_i|, |q_i|): p_i / q_i = theta_{i+1} / theta_i (consecutive
    leading principal minors), so a zero pivot is (0, q) and the next is (p, 0), never a division. alpha (N, B),
    k (N-1, B) complex128; returns p, q (N, B)."""
    n = alpha.shape[0]
    p = np.empty_like(alpha)
    q = np.empty_like(alpha)
    p[0], q[0] = alpha[0], 1.0
    for i in range(1, n):
        pi = alpha[i] * p[i - 1] - k[i - 1] * q[i - 1]
        qi = p[i - 1]
        scale = np.maximum(np.abs(pi), np.abs(qi))
        scale = np.where(scale > 0, scale, 1.0)
        p[i], q[i] = pi / scale, qi / scale
    return p, q


def quotient_pivots(alpha: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The textbook quotient recursions D_i = alpha_i - k_{i-1} / D_{i-1}, E_i = alpha_i - k_i / E_{i+1}.
    alpha (N, B) = a - z, k (N-1, B) = b * c, complex128; returns (D, E), each (N, B). A zero pivot makes the rest
    of the chain NaN (:func:`pivot_reference` then takes the projective form)."""
    n = alpha.shape[0]
    d = np.empty_like(alpha)
    e = np.empty_like(alpha)
    d[0] = alpha[0]
    for i in range(1, n):
        d[i] = alpha[i] - k[i - 1] / d[i - 1]
    e[n - 1] = alpha[n - 1]
    for i in range(n - 2, -1, -1):
        e[i] = alpha[i] - k[i] / e[i + 1]
    return d, e


def _quotient_green(alpha: np.ndarray, k: np.ndarray) -> np.ndarray:
    """G (N, B) = 1 / (D + E - alpha) from :func:`quotient_pivots`."""
    d, e = quotient_pivots(alpha, k)
    return 1.0 / (d + e - alpha)


def pivot_sensitivity(alpha: np.ndarray, k: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G, S), each (N, B) complex128: G from the pivots and S_j = sum_i w_i G_ij G_ji = G_j^2 (F_j + R_j - w_j)
    by the exact O(N) recurrences of the backward pass (bk-core-math.md): F_j = w_j + k_{j-1} / D_{j-1}^2
    F_{j-1}, R_j = w_j + k_j / E_{j+1}^2 R_{j+1}. alpha (N, B), k (N-1, B), w (N, B) (the conjugated output
    gradient). The gradient of sum(Re(conj(grad_out) * G)) w.r.t. a real ``a`` is -Re(S)."""
    n = alpha.shape[0]
    d, e = quotient_pivots(alpha, k)
    g = 1.0 / (d + e - alpha)
    f = np.empty_like(w)
    r = np.empty_like(w)
    f[0] = w[0]
    for j in range(1, n):
        f[j] = w[j] + k[j - 1] / d[j - 1] ** 2 * f[j - 1]
    r[n - 1] = w[n - 1]
    for j in range(n - 2, -1, -1):
        r[j] = w[j] + k[j] / e[j + 1] ** 2 * r[j + 1]
    return g, g**2 * (f + r - w)


def _projective_green(alpha: np.ndarray, k: np.ndarray) -> np.ndarray:
    """G (N, B) with the pivots carried as pairs (:func:`_projective_pivots`): D_i = p_i / q_i, E_i = r_i / s_i,
    G_i = 1 / (D_i + E_i - alpha_i) = q_i s_i / (p_i s_i + r_i q_i - alpha_i q_i s_i) = theta_i phi_{i+1} / det.
    Nothing divides by a pivot, so only a singular matrix gives a zero denominator."""
    p, q = _projective_pivots(alpha, k)
    r, s = _projective_pivots(alpha[::-1].copy(), k[::-1].copy())
    r, s = r[::-1], s[::-1]
    return q * s / (p * s + r * q - alpha * q * s)


def pivot_reference(inputs: Inputs) -> torch.Tensor:
    """diag((T - zI)^-1) by the float64 LU/UL pivot form; complex128 of shape a.shape (CPU).

    Chains where the quotient recursion breaks down (a zero pivot of a non-singular matrix, e.g. a = [0, 1],
    b = c = 1, z = 0, whose G = [-1, 0]) are computed again in the projective form, which has no breakdown;
    a singular matrix stays non-finite."""
    a, b, c, z = _as_f64(inputs)
    alpha = (a - z[:, None]).detach().numpy().T.copy()  # (N, B)
    k = (b * c).detach().numpy().T.copy()  # (N-1, B)
    n = alpha.shape[0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = _quotient_green(alpha, k)
        bad = ~np.isfinite(g).all(axis=0)
        if bad.any():
            g[:, bad] = _projective_green(alpha[:, bad], k[:, bad])
    return torch.from_numpy(g.T.copy()).reshape(inputs.a.shape[:-1] + (n,))


def reference(inputs: Inputs) -> torch.Tensor:
    """The float64 reference: dense inverse for N <= DENSE_MAX_N, pivot form beyond."""
    n = inputs.a.shape[-1]
    return dense_reference(inputs) if n <= DENSE_MAX_N else pivot_reference(inputs)


def pivot_grad_reference(inputs: Inputs, grad_out: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. a real ``a`` (B, N) of sum(Re(conj(grad_out) * G)) in float64 by the O(N) recurrences
    (:func:`pivot_sensitivity`): float64 of shape (B, N) (CPU)."""
    a, b, c, z = _as_f64(inputs)
    alpha = (a - z[:, None]).detach().numpy().T.copy()  # (N, B)
    k = (b * c).detach().numpy().T.copy()  # (N-1, B)
    w = np.conj(grad_out.detach().to("cpu").to(torch.complex128).reshape(a.shape).numpy()).T.copy()
    _, sens = pivot_sensitivity(alpha, k, w)
    return torch.from_numpy(-np.real(sens).T.copy())


def dense_grad_reference(inputs: Inputs, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients w.r.t. a (and z when it is a tensor) of sum(Re(conj(grad_out) * G)) via autograd through
    the dense float64 inverse. Returns (grad_a with a's real/complex kind, grad_z or None)."""
    a0 = inputs.a.detach().to("cpu")
    a = a0.to(torch.complex128 if a0.is_complex() else torch.float64).requires_grad_(True)
    z0 = inputs.z
    z = z0.detach().to("cpu").to(torch.complex128).requires_grad_(True) if isinstance(z0, torch.Tensor) else z0
    g = dense_reference(Inputs(a, inputs.b, inputs.c, z))
    g.backward(grad_out.to("cpu").to(torch.complex128))
    return a.grad, (z.grad if isinstance(z, torch.Tensor) else None)
