"""``naive_loop``: the determinant (Usmani) recursions, one step at a time, with a carried binary scale.

theta_0 = 1, theta_1 = alpha_0, theta_{i+1} = alpha_i theta_i - k_{i-1} theta_{i-1};
phi_N = 1, phi_{N-1} = alpha_{N-1}, phi_i = alpha_i phi_{i+1} - k_i phi_{i+2};
G_i = theta_i phi_{i+1} / theta_N.

theta_N = det(T - zI) overflows float32 after ~100 steps, so after every step the running pair is divided by
a power of two (exact: only the exponent changes) and the exponent is accumulated in an int64 per position.
The mantissas follow exactly the unscaled recursion's rounding; the scale is exact at any N, so float32
results keep float32 accuracy at any N. Not differentiable (use ``thomas``).
"""

from __future__ import annotations

import torch

from bkbench.kernels.bk._pivot_common import shifted_diagonal
from bkbench.registry import is_uniform, register


def _scaled_recursion(al: torch.Tensor, kk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mantissas m (L+1, B) and exponents x (L+1, B) with theta_j = m_j * 2**x_j for the recursion
    theta_0 = 1, theta_1 = al_0, theta_{j+1} = al_j theta_j - kk_{j-1} theta_{j-1}; al (L, B), kk (L-1, B) or 0-d.
    """
    n, bsz = al.shape
    m = torch.empty((n + 1, bsz), dtype=al.dtype, device=al.device)
    x = torch.zeros((n + 1, bsz), dtype=torch.int64, device=al.device)
    uniform = kk.dim() == 0
    m[0] = 1
    cur, prev = al[0].clone(), torch.ones_like(al[0])
    exp = torch.zeros(bsz, dtype=torch.int64, device=al.device)
    for j in range(n):
        if j > 0:
            new = al[j] * cur - (kk if uniform else kk[j - 1]) * prev
            cur, prev = new, cur
        # rescale the pair (cur, prev) by 2**-e so that max(|cur|, |prev|) lies in [0.5, 1)
        big = torch.maximum(cur.abs(), prev.abs())
        _, e = torch.frexp(torch.where(big > 0, big, torch.ones_like(big)))
        factor = torch.ldexp(torch.ones_like(big), -e)
        cur, prev = cur * factor, prev * factor
        exp = exp + e.to(torch.int64)
        m[j + 1] = cur
        x[j + 1] = exp
    return m, x


@register(
    "naive_loop",
    kind="bk",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128),
    differentiable=False,
    description="determinant recursions (theta/phi), one step per position, exact power-of-two rescaling",
    fallback_rank={"cuda": 3, "cpu": 2},
)
def naive_loop(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128."""
    alpha = shifted_diagonal(a, z)
    al = alpha.transpose(0, 1).contiguous()  # (N, B)
    if is_uniform(k):
        kk = k[:1, :1].reshape(()).to(al.dtype)
        kr = kk
    else:
        kk = k.transpose(0, 1).contiguous().to(al.dtype)  # (N-1, B)
        kr = kk.flip(0)
    th_m, th_x = _scaled_recursion(al, kk)  # theta_j, j = 0..N
    ph_m, ph_x = _scaled_recursion(al.flip(0), kr)  # psi_j = phi_{N-j}, j = 0..N
    # G_i = theta_i * phi_{i+1} / theta_N, phi_{i+1} = psi_{N-1-i}
    ph_m = ph_m.flip(0)[1:]  # phi_{i+1} at row i, i = 0..N-1
    ph_x = ph_x.flip(0)[1:]
    mant = th_m[:-1] * ph_m / th_m[-1]
    expo = th_x[:-1] + ph_x - th_x[-1]
    real = torch.float64 if mant.dtype == torch.complex128 else torch.float32
    g = mant * torch.ldexp(torch.ones(expo.shape, dtype=real, device=expo.device), expo.to(real))
    return g.transpose(0, 1)
