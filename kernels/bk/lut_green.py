"""``lut_green``: texture-style LUT Green's function — bulk self-energy table + windowed continued fraction.

Approximate. Each G_i is computed independently (no scan, O(N * m) work): the left and right self-energies
of site i are exact continued fractions over the ``window`` = m bonds on each side, closed by the bulk
self-energy of the site just outside the window, read from a 1-D table over real a (linear interpolation)
or evaluated in closed form; at the chain ends the fraction terminates exactly. m = 0 is the pure table.
The error decays geometrically in m at a rate set by Im z (and the disorder of the potential); the declared
tolerance is :func:`lut_error_model`. Details of the closure, range handling and table cache: kernels/bk/_lut.py
and docs/lut_green.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bkbench.kernels.bk._lut import (
    DEFAULT_MAX_TABLES,
    DEFAULT_RANGE,
    DEFAULT_SIZE,
    ClosurePlan,
    bulk_sigma,
    check_options,
    complex_dtype_of,
    interpolate,
    plan_closure,
)
from bkbench.kernels.bk._pivot_common import pivot_floor
from bkbench.registry import is_uniform, register

DEFAULTS: dict[str, Any] = {
    "window": 8,
    "table_range": DEFAULT_RANGE,
    "table_size": DEFAULT_SIZE,
    "out_of_range": "analytic",
    "tail": "table",
    "max_tables": DEFAULT_MAX_TABLES,
}


def lut_error_model(problem: Any, options: dict[str, Any]) -> float:
    """Declared relative tolerance max|G - G_ref| / max|G_ref| of ``lut_green`` for ``problem``.

    An envelope fitted to measurements (docs/lut_green.md; tests/test_lut_green.py checks it on a grid of
    potentials, Re z, Im z, couplings and windows):

        tol(m, eta) = (3 + 0.5 / eta) * exp(-rate(eta) * m) + eps * (50 + 1 / eta)

    - rate(eta) = 2 asinh(eta / (2 sqrt(k_max))) is the per-bond contraction -log(|Sigma|^2 / |k|) of the
      clean chain at the band centre — the slowest decay we measured; disorder and Re z outside the band
      only make the error fall faster (by a lot: see the table in docs/lut_green.md), so this is loose
      there. k_max = 1 for Laplacian couplings, (1 + 3 * coupling_scale)^2 for random ones.
    - the prefactor 3 covers the m = 0 error (at most 2.4 measured); 0.5 / eta covers short windows near
      the real axis, where the approximate G can reach |G| ~ 1 / eta (measured 10 at m = 1, eta = 1e-3).
    - eps * (50 + 1 / eta) is the rounding floor (eps of the work dtype; rounding is amplified ~1/eta near
      the real axis: measured 6e-6 in float32 at eta = 0.01).
    eta = |Im z| of the problem's base shift (z_spread and an absorbing complex a only move the spectrum
    further from z). eta = 0 gives an infinite tolerance: no accuracy is claimed on the real axis.
    """
    m = int(options.get("window", DEFAULTS["window"]))
    eta = abs(float(complex(problem.z).imag))
    if eta == 0.0:
        return math.inf
    eps = 2.2e-16 if getattr(problem, "dtype", "float32") == "float64" else 1.2e-7
    k_max = 1.0
    if getattr(problem, "coupling", "laplacian") == "random":
        k_max = (1.0 + 3.0 * float(getattr(problem, "coupling_scale", 0.3))) ** 2
    rate = 2.0 * math.asinh(eta / (2.0 * math.sqrt(k_max)))
    return (3.0 + 0.5 / eta) * math.exp(-rate * m) + eps * (50.0 + 1.0 / eta)


def _closure_values(
    alpha: torch.Tensor, a: torch.Tensor, k: torch.Tensor, plan: ClosurePlan, uniform: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-site closure values SL, SR (B, N) complex.

    SL[j] = Sigma(alpha_j; k_j) closes a left fraction whose outermost bond is k_j (j <= N-2);
    SR[j] = Sigma(alpha_j; k_{j-1}) closes a right fraction whose outermost bond is k_{j-1} (j >= 1).
    Unused entries (SL[N-1], SR[0]) are left at the neighbouring bond's value; the windows never read them.
    """
    n = alpha.shape[1]
    if plan.source == "table":
        spec = plan.spec
        inside = (a >= spec.lo) & (a <= spec.hi)
        sig = interpolate(plan.tables, plan.index, torch.clamp(a, spec.lo, spec.hi), spec)
        if plan.any_outside:
            kb = k[:, :1] if n > 1 else torch.zeros_like(a[:, :1])
            exact = bulk_sigma(alpha, kb.to(alpha.dtype))
            sig = torch.where(inside, sig, exact)  # out-of-range a: closed form, never a clamped table read
        return sig, sig
    if n == 1:
        z0 = torch.zeros_like(alpha)
        return z0, z0
    kc = (k[:, :1] if uniform else k).to(alpha.dtype)
    if uniform:
        sig = bulk_sigma(alpha, kc)
        return sig, sig
    k_right = torch.cat([kc, kc[:, -1:]], dim=1)  # bond to the right of site j (last: unused)
    k_left = torch.cat([kc[:, :1], kc], dim=1)  # bond to the left of site j (first: unused)
    return bulk_sigma(alpha, k_right), bulk_sigma(alpha, k_left)


def windowed_green(
    alpha: torch.Tensor, k: torch.Tensor, sl: torch.Tensor, sr: torch.Tensor, window: int, uniform: bool
) -> torch.Tensor:
    """G (B, N) from the windowed fractions. alpha, sl, sr (B, N) complex; k (B, N-1) (stride-0 if uniform)."""
    b, n = alpha.shape
    m = window
    kc = k[:1, :1].to(alpha.dtype) if uniform else k.to(alpha.dtype)
    left = torch.zeros_like(alpha)
    right = torch.zeros_like(alpha)
    if m + 1 < n:
        left[:, m + 1 :] = sl[:, : n - m - 1]  # L_{i-m} ~ Sigma(alpha_{i-m-1}; k_{i-m-1})
        right[:, : n - m - 1] = sr[:, m + 1 :]  # R_{i+m} ~ Sigma(alpha_{i+m+1}; k_{i+m})
    # a denominator alpha_j - L that is exactly 0 (a zero pivot: a = [0, 1], b = c = 1, z = 0 is not singular)
    # becomes the rounding floor of the chain (kernels/bk/_pivot_common.py), never a division by zero
    tiny = pivot_floor(alpha, k, uniform).to(alpha.dtype) if min(m, n - 1) > 0 else None
    for t in range(min(m, n - 1), 0, -1):
        # left: j = i - t >= 0, L <- k_j / (alpha_j - L)
        kl = kc if uniform else kc[:, : n - t]
        den = alpha[:, : n - t] - left[:, t:]
        left[:, t:] = kl / torch.where(den == 0, tiny, den)
        # right: j = i + t <= N-1, R <- k_{j-1} / (alpha_j - R)
        kr = kc if uniform else kc[:, t - 1 : n - 1]
        den = alpha[:, t:] - right[:, : n - t]
        right[:, : n - t] = kr / torch.where(den == 0, tiny, den)
    return torch.reciprocal(alpha - left - right)


def lut_green_core(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> torch.Tensor:
    """The PyTorch implementation (shared with tests): a (B, N), k (B, N-1), z (B,) -> G (B, N) complex."""
    opts = {**DEFAULTS, **options}
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"options: unknown option(s) {sorted(unknown)} for lut_green; known: {sorted(DEFAULTS)}")
    spec = check_options(
        opts["window"], opts["table_range"], opts["table_size"], opts["out_of_range"], opts["tail"], opts["max_tables"]
    )
    cdt = complex_dtype_of(a)
    alpha = a.to(cdt) - z.to(cdt)[:, None]
    uniform = is_uniform(k)
    plan = plan_closure(
        a, k, z, spec, out_of_range=opts["out_of_range"], tail=opts["tail"], max_tables=opts["max_tables"]
    )
    sl, sr = _closure_values(alpha, a, k, plan, uniform)
    return windowed_green(alpha, k, sl, sr, opts["window"], uniform)


@register(
    "lut_green",
    kind="bk",
    exact=False,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128),
    differentiable=False,
    defaults=dict(DEFAULTS),
    error_model=lut_error_model,
    description="bulk self-energy table + windowed continued fraction (approximate, O(N*m), no scan)",
)
def lut_green(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128 (approximate)."""
    return lut_green_core(a, k, z, **options)
