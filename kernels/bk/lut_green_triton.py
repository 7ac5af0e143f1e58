"""``lut_green_triton``: the texture-style LUT Green's function as one Triton kernel.

Same approximation, options and error model as ``lut_green`` (kernels/bk/lut_green.py, kernels/bk/_lut.py): each
program owns ``BLOCK`` consecutive sites of one chain; per site it gathers the closing site's a, reads the
bulk self-energy table with linear interpolation (four 4-byte gathers from a table that stays in L1/L2) or
evaluates the closed form, runs the m-step left and right continued fractions in registers (the shifted
loads of a hit L1/L2: they are the neighbours' elements; a uniform k is loaded once), and writes G_i as one
8-byte (Re, Im) store. No scan, no carries. Addressing is int32 relative to the chain's row.
Host work per call: one device-to-host copy of the per-chain (z, k) values to find the cached table (no read
of a: out-of-range a is detected per element in the kernel, see ``_closure``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bkbench.kernels.bk._cplx_triton import HAS_TRITON, check_device, triton_available, triton_supports
from bkbench.kernels.bk._lut import check_options, complex_dtype_of, plan_closure
from bkbench.kernels.bk.lut_green import DEFAULTS, lut_error_model
from bkbench.registry import is_uniform, register

if HAS_TRITON:  # without triton the module still imports and registers the kernel as unavailable (and why)
    import triton
    import triton.language as tl

    from bkbench.kernels.bk._cplx_triton import bulk_sigma, cdiv

    @triton.jit
    def _load_alpha(a_row, j, mask, zr, zi, A_CPLX: tl.constexpr):
        """(Re a_j, Re alpha_j, Im alpha_j); a_row points at the chain's first element, j is int32.

        One return statement: Triton's code generator still visits the statements after a ``return`` inside a
        constexpr ``if`` and demands that every return has the same types."""
        if A_CPLX:
            ar = tl.load(a_row + j * 2, mask=mask, other=0.0)
            ai = tl.load(a_row + j * 2 + 1, mask=mask, other=0.0)
            al_i = ai - zi
        else:
            ar = tl.load(a_row + j, mask=mask, other=0.0)
            al_i = -zi + 0.0 * ar
        return ar, ar - zr, al_i

    @triton.jit
    def _load_k(k_row, j, skn, mask, kr0, ki0, K_CPLX: tl.constexpr, K_UNIF: tl.constexpr):
        """(Re k_j, Im k_j) per lane (0 where ``mask`` is off), always block tensors: with a uniform coupling the
        caller's scalars are broadcast (returning the scalars themselves made the uniform-k kernel, N = 1
        included, fail to compile on the GPU: "Inconsistent return types"; the CPU interpreter never checks)."""
        if K_UNIF:  # one coupling for every bond: loaded once by the caller
            kr = tl.where(mask, kr0, 0.0)
            ki = tl.where(mask, ki0, 0.0)
        elif K_CPLX:
            kr = tl.load(k_row + j * skn, mask=mask, other=0.0)
            ki = tl.load(k_row + j * skn + 1, mask=mask, other=0.0)
        else:
            kr = tl.load(k_row + j * skn, mask=mask, other=0.0)
            ki = 0.0 * kr
        return kr, ki

    @triton.jit
    def _closure(a_re, al_r, al_i, kr, ki, tab_row, lo, hi, inv_h, size,
                 USE_TABLE: tl.constexpr, CHECK_RANGE: tl.constexpr):
        """Sigma at the closing site: table read (linear interpolation) or closed form.

        With CHECK_RANGE every element is tested against [lo, hi]; if any lane of the block is outside, the
        closed form is evaluated for the block and used on those lanes (never a clamped table value).
        """
        if USE_TABLE:
            u = (tl.minimum(tl.maximum(a_re, lo), hi) - lo) * inv_h
            i0 = tl.minimum(tl.floor(u), size - 2)
            f = u - i0
            i0 = i0.to(tl.int32)
            t0r = tl.load(tab_row + i0 * 2)
            t0i = tl.load(tab_row + i0 * 2 + 1)
            t1r = tl.load(tab_row + i0 * 2 + 2)
            t1i = tl.load(tab_row + i0 * 2 + 3)
            sr = t0r + f * (t1r - t0r)
            si = t0i + f * (t1i - t0i)
            if CHECK_RANGE:
                outside = (a_re < lo) | (a_re > hi)
                if tl.max(outside.to(tl.int32), axis=0) > 0:
                    er, ei = bulk_sigma(al_r, al_i, kr, ki)
                    sr = tl.where(outside, er, sr)
                    si = tl.where(outside, ei, si)
            return sr, si
        return bulk_sigma(al_r, al_i, kr, ki)

    UNROLL_MAX = tl.constexpr(8)

    @triton.jit
    def _window_step(a_row, k_row, i, t, N, live, zr, zi, skn, kr0, ki0, lr, li, rr, ri, tiny,
                     A_CPLX: tl.constexpr, K_CPLX: tl.constexpr, K_UNIF: tl.constexpr):
        """One bond of both fractions at distance t: L <- k_j / (alpha_j - L) at j = i - t >= 0 and
        R <- k_{j-1} / (alpha_j - R) at j = i + t <= N - 1. A denominator that is exactly 0 (a zero pivot of a
        non-singular matrix) is replaced by the lane's rounding floor ``tiny``."""
        j = i - t
        mj = live & (j >= 0)
        _, al_r, al_i = _load_alpha(a_row, j, mj, zr, zi, A_CPLX)
        kr, ki = _load_k(k_row, j, skn, mj, kr0, ki0, K_CPLX, K_UNIF)
        dr = al_r - lr
        di = al_i - li
        dr = tl.where((dr == 0) & (di == 0), tiny, dr)
        nr, ni = cdiv(kr, ki, dr, di)
        lr = tl.where(mj, nr, lr)
        li = tl.where(mj, ni, li)
        j = i + t
        mj = live & (j <= N - 1)
        _, al_r, al_i = _load_alpha(a_row, j, mj, zr, zi, A_CPLX)
        kr, ki = _load_k(k_row, j - 1, skn, mj, kr0, ki0, K_CPLX, K_UNIF)
        dr = al_r - rr
        di = al_i - ri
        dr = tl.where((dr == 0) & (di == 0), tiny, dr)
        nr, ni = cdiv(kr, ki, dr, di)
        rr = tl.where(mj, nr, rr)
        ri = tl.where(mj, ni, ri)
        return lr, li, rr, ri

    @triton.jit
    def _lut_green_kernel(
        a_ptr, k_ptr, z_ptr, tab_ptr, idx_ptr, out_ptr,
        N, skb, skn, lo, hi, inv_h, size, eps,
        M: tl.constexpr, BLOCK: tl.constexpr, A_CPLX: tl.constexpr, K_CPLX: tl.constexpr,
        K_UNIF: tl.constexpr, USE_TABLE: tl.constexpr, PER_CHAIN_TABLE: tl.constexpr,
        CHECK_RANGE: tl.constexpr,
    ):
        b = tl.program_id(0).to(tl.int64)  # chains on grid axis 0: axis 1 is limited to 65535 programs
        i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # int32 position in the chain
        live = i < N
        if A_CPLX:
            a_row = a_ptr + b * N * 2
        else:
            a_row = a_ptr + b * N
        k_row = k_ptr + b * skb
        zr = tl.load(z_ptr + 2 * b)
        zi = tl.load(z_ptr + 2 * b + 1)
        kr0 = tl.load(k_row)
        ki0 = 0.0 * kr0
        if K_CPLX:
            ki0 = tl.load(k_row + 1)
        tab_row = tab_ptr
        if PER_CHAIN_TABLE:
            tab_row = tab_ptr + tl.load(idx_ptr + b).to(tl.int64) * size * 2

        # left fraction, closed at site j = i - M - 1 by Sigma(alpha_j; k_j)
        j = i - M - 1
        mj = live & (j >= 0)
        a_re, al_r, al_i = _load_alpha(a_row, j, mj, zr, zi, A_CPLX)
        kr, ki = _load_k(k_row, j, skn, mj, kr0, ki0, K_CPLX, K_UNIF)
        lr, li = _closure(a_re, al_r, al_i, kr, ki, tab_row, lo, hi, inv_h, size, USE_TABLE, CHECK_RANGE)
        lr = tl.where(mj, lr, 0.0)
        li = tl.where(mj, li, 0.0)
        # right fraction, closed at site j = i + M + 1 by Sigma(alpha_j; k_{j-1})
        j = i + M + 1
        mj = live & (j <= N - 1)
        a_re, al_r, al_i = _load_alpha(a_row, j, mj, zr, zi, A_CPLX)
        kr, ki = _load_k(k_row, j - 1, skn, mj, kr0, ki0, K_CPLX, K_UNIF)
        rr, ri = _closure(a_re, al_r, al_i, kr, ki, tab_row, lo, hi, inv_h, size, USE_TABLE, CHECK_RANGE)
        rr = tl.where(mj, rr, 0.0)
        ri = tl.where(mj, ri, 0.0)

        # rounding floor of a zero denominator: eps * (|alpha_i| + 2 sqrt|k_0|), the lane's own scale
        _, al_r, al_i = _load_alpha(a_row, i, live, zr, zi, A_CPLX)
        tiny = eps * (tl.abs(al_r) + tl.abs(al_i) + 2.0 * tl.sqrt(tl.abs(kr0) + tl.abs(ki0)))
        if M <= UNROLL_MAX:  # short windows: unrolled (fast to compile, no loop overhead)
            for t in tl.static_range(M, 0, -1):
                lr, li, rr, ri = _window_step(a_row, k_row, i, t, N, live, zr, zi, skn, kr0, ki0, lr, li, rr, ri,
                                              tiny, A_CPLX, K_CPLX, K_UNIF)
        else:  # long windows: a rolled loop (an unrolled m = 32 kernel took 45 s to compile on the H100)
            for tt in range(0, M):
                lr, li, rr, ri = _window_step(a_row, k_row, i, M - tt, N, live, zr, zi, skn, kr0, ki0, lr, li, rr, ri,
                                              tiny, A_CPLX, K_CPLX, K_UNIF)

        gr, gi = cdiv(1.0 + 0.0 * al_r, 0.0 * al_r, al_r - lr - rr, al_i - li - ri)
        offs = i[:, None] * 2 + tl.arange(0, 2)[None, :]
        tl.store(out_ptr + b * N * 2 + offs, tl.join(gr, gi), mask=live[:, None])


def _block_for(n: int) -> int:
    return max(16, min(256, 1 << max(0, (n - 1).bit_length())))


def prepare(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> Callable[[], torch.Tensor]:
    """Everything but the launch: options, closure plan (table lookup/build), views, output buffer.

    Returns a zero-argument callable that launches the kernel and returns G (B, N) complex. Calling it again
    overwrites the same output buffer. :func:`lut_green_triton_core` is ``prepare(...)()``.
    """
    check_device(a, "lut_green_triton")
    opts = {**DEFAULTS, **options}
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(
            f"options: unknown option(s) {sorted(unknown)} for lut_green_triton; known: {sorted(DEFAULTS)}"
        )
    spec = check_options(
        opts["window"], opts["table_range"], opts["table_size"], opts["out_of_range"], opts["tail"], opts["max_tables"]
    )
    bsz, n = a.shape
    cdt = complex_dtype_of(a)
    rdt = torch.float64 if cdt == torch.complex128 else torch.float32
    plan = plan_closure(
        a, k, z, spec, out_of_range=opts["out_of_range"], tail=opts["tail"], max_tables=opts["max_tables"],
        host_range_check=False,
    )
    a_c = a.contiguous()
    a_view = torch.view_as_real(a_c) if a_c.is_complex() else a_c
    k_unif = True
    if n > 1:
        kk = k.to(cdt if k.is_complex() else rdt)
        if is_uniform(kk):
            k_view = torch.view_as_real(kk[:1, :1].contiguous()) if kk.is_complex() else kk[:1, :1].contiguous()
            skb = skn = 0
        else:
            kk = kk.contiguous()
            k_view = torch.view_as_real(kk) if kk.is_complex() else kk
            mult = 2 if kk.is_complex() else 1
            skb, skn = kk.stride(0) * mult, kk.stride(1) * mult
            k_unif = False
        k_cplx = kk.is_complex()
    else:
        k_view = torch.zeros(1, dtype=rdt, device=a.device)
        skb = skn = 0
        k_cplx = False
    z_view = torch.view_as_real(z.to(cdt).contiguous())
    use_table = plan.source == "table"
    tab = torch.view_as_real(plan.tables) if use_table else torch.zeros(2, dtype=rdt, device=a.device)
    per_chain = use_table and plan.index is not None
    idx = plan.index if per_chain else torch.zeros(1, dtype=torch.int32, device=a.device)
    check_range = use_table and plan.any_outside is not False
    out = torch.empty((bsz, n), dtype=cdt, device=a.device)
    out_view = torch.view_as_real(out)
    block = _block_for(n)
    grid = (bsz, triton.cdiv(n, block))  # bsz may exceed 65535 (the limit of grid axes 1 and 2)
    lo, hi, inv_h, size = float(plan.spec.lo), float(plan.spec.hi), 1.0 / plan.spec.step, plan.spec.size
    eps = float(torch.finfo(rdt).eps)

    def launch() -> torch.Tensor:
        if out.numel():
            _lut_green_kernel[grid](
                a_view, k_view, z_view, tab, idx, out_view,
                n, skb, skn, lo, hi, inv_h, size, eps,
                M=opts["window"], BLOCK=block, A_CPLX=a_c.is_complex(), K_CPLX=k_cplx, K_UNIF=k_unif,
                USE_TABLE=use_table, PER_CHAIN_TABLE=per_chain, CHECK_RANGE=check_range,
            )
        return out

    return launch


def lut_green_triton_core(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex (CUDA, or CPU interpreter)."""
    return prepare(a, k, z, **options)()


@register(
    "lut_green_triton",
    kind="bk",
    exact=False,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128),
    differentiable=False,
    defaults=dict(DEFAULTS),
    error_model=lut_error_model,
    available=triton_available,
    supports=triton_supports,
    description="Triton: table gather + interpolation + m-step fractions in registers (approximate, no scan)",
)
def lut_green_triton(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128 (approximate)."""
    return lut_green_triton_core(a, k, z, **options)
