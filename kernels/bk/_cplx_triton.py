"""Complex arithmetic on (re, im) register pairs for the Triton kernels of ``lut_green_triton`` and
``lns_triton``, plus the availability checks they share.

Every helper takes and returns separate real tensors (Triton has no complex dtype).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None
    HAS_TRITON = False

# Largest B * N the Triton interpreter (TRITON_INTERPRET=1, CPU) is asked to run in the gate.
INTERPRETER_MAX_ELEMENTS = 4096


def interpreting() -> bool:
    """True when Triton kernels run on the CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> str | None:
    """None when a Triton kernel can run here (CUDA, or the interpreter), else the reason."""
    if not HAS_TRITON:
        return "triton is not installed"
    if torch.cuda.is_available() or interpreting():
        return None
    return "needs a CUDA GPU (or TRITON_INTERPRET=1 for the CPU interpreter)"


def triton_supports(problem: object) -> str | None:
    """Decline CPU problems unless the interpreter is on and the problem is small."""
    if getattr(problem, "device", "cpu") == "cpu":
        if not interpreting():
            return "Triton kernel: on the CPU only under TRITON_INTERPRET=1"
        if getattr(problem, "elements", 0) > INTERPRETER_MAX_ELEMENTS:
            return f"Triton interpreter: only B*N <= {INTERPRETER_MAX_ELEMENTS} on the CPU"
    return None


def check_device(a: torch.Tensor, name: str) -> None:
    """ValueError when ``a`` lives on the CPU and the interpreter is off."""
    if a.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"a: {name} runs on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1); got device {a.device}"
        )


if HAS_TRITON:
    if interpreting():
        # The CPU interpreter has no libdevice: atan2 by a polynomial start and two Newton steps on
        # (cos t, sin t) . (x, y) (each step squares the error; float64-accurate), expm1 as exp - 1.

        @triton.jit
        def atan2(y, x):
            ax = tl.abs(x)
            ay = tl.abs(y)
            mx = tl.maximum(ax, ay)
            q = tl.minimum(ax, ay) / tl.where(mx == 0, 1.0, mx)
            s = q * q
            t = ((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s * q + q
            t = tl.where(ay > ax, 1.5707963267948966 - t, t)
            t = tl.where(x < 0, 3.141592653589793 - t, t)
            t = tl.where(y < 0, -t, t)
            for _ in tl.static_range(2):
                c = tl.cos(t)
                sn = tl.sin(t)
                den = c * x + sn * y
                t = t + (c * y - sn * x) / tl.where(den == 0, 1.0, den)
            return tl.where(mx == 0, 0.0 * t, t)

        @triton.jit
        def expm1(x):
            return tl.exp(x) - 1.0

    else:
        from triton.language.extra import libdevice

        @triton.jit
        def atan2(y, x):
            return libdevice.atan2(y, x)

        @triton.jit
        def expm1(x):
            return libdevice.expm1(x)

    @triton.jit
    def cmul(ar, ai, br, bi):
        return ar * br - ai * bi, ar * bi + ai * br

    @triton.jit
    def cdiv(ar, ai, br, bi):
        """(ar + i ai) / (br + i bi), scaled by the larger component of the divisor (no overflow of |b|^2)."""
        s = tl.maximum(tl.abs(br), tl.abs(bi))
        s = tl.where(s == 0, 1.0, s)
        inv_s = 1.0 / s
        brs = br * inv_s
        bis = bi * inv_s
        inv = 1.0 / (brs * brs + bis * bis)
        ars = ar * inv_s
        ais = ai * inv_s
        return (ars * brs + ais * bis) * inv, (ais * brs - ars * bis) * inv

    @triton.jit
    def csqrt(x, y):
        """Principal square root of x + i y (no cancellation: the small component is y / 2t)."""
        r = tl.sqrt(x * x + y * y)
        t = tl.sqrt(0.5 * (r + tl.abs(x)))
        t_safe = tl.where(t == 0, 1.0, t)
        other = 0.5 * y / t_safe
        re = tl.where(x >= 0, t, tl.abs(other))
        im = tl.where(x >= 0, other, tl.where(y >= 0, t, -t))
        return re, im

    @triton.jit
    def bulk_sigma(ar, ai, kr, ki):
        """Decaying bulk self-energy Sigma(alpha; k) = 2k / (alpha + s), s = +-sqrt(alpha^2 - 4k)."""
        wr = ar * ar - ai * ai - 4.0 * kr
        wi = 2.0 * ar * ai - 4.0 * ki
        sr, si = csqrt(wr, wi)
        flip = (ar * sr + ai * si) < 0
        sr = tl.where(flip, -sr, sr)
        si = tl.where(flip, -si, si)
        dr = ar + sr
        di = ai + si
        zero = (dr == 0) & (di == 0)
        qr, qi = cdiv(2.0 * kr, 2.0 * ki, tl.where(zero, 1.0, dr), di)
        return tl.where(zero, 0.0, qr), tl.where(zero, 0.0, qi)
