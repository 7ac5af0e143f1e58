"""``lns_triton``: the chunked log-polar (complex LNS) BK-core as three Triton kernels.

Same algorithm and options as ``lns`` (kernels/bk/_lns.py): one lane per (chain, chunk of C sites).
  1. ``_transfer``: each lane forms its chunk's forward and backward 2x2 transfer matrices in LNS
     (normalised every step), 2 Gaussian-log additions per site and direction;
  2. ``_carry``: one lane per chain applies the chunk maps in order, giving the incoming pivot of every chunk
     (forward D and backward E);
  3. ``_solve``: each lane re-runs the forward pivots from its carry, parks D_i as (log, arg) in the output
     buffer, then runs the backward pivots and overwrites each site with G_i = 1 / (D_i - R_i) (complex).
Inputs are converted to (log|x|, arg x) on load; G is converted back on store. Log/arg accumulators have the
width of the work (float32 for float32 inputs): pivot ratios keep them O(1) at any N.
The loops over a runtime count (C sites, N / C chunks) are ``while`` loops: one binary for every N, and the
Triton 3.6 CPU interpreter (which cannot ``range`` over a scalar argument with numpy >= 2.3) runs the same code.
Parallelism: B * ceil(N / C) lanes for passes 1 and 3, B lanes for the carry (depth N / C): a handful of
very long chains (B * N / C below a few thousand lanes) leaves the GPU mostly idle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from bkbench.kernels.bk._cplx_triton import HAS_TRITON, check_device, triton_available, triton_supports
from bkbench.kernels.bk._lns import TAU, build_gauss_table
from bkbench.kernels.bk.lns import DEFAULTS, check_lns_options, check_table_precision, complex_work_dtype
from bkbench.registry import is_uniform, register

if HAS_TRITON:  # without triton the module still imports and registers the kernel as unavailable (and why)
    import triton
    import triton.language as tl

    from bkbench.kernels.bk._cplx_triton import atan2 as _atan2
    from bkbench.kernels.bk._cplx_triton import expm1 as _expm1

    @triton.jit
    def _wrap(p, two_pi, inv_two_pi):
        return p - two_pi * tl.floor(p * inv_two_pi + 0.5)

    @triton.jit
    def _gauss_computed(d, delta, pi):
        """log(1 + e^d e^{i delta}); cos(delta / 2) as sin((pi - |delta|) / 2), exactly 0 at |delta| = pi (the
        phase of a negative number), so x + (-x) is exactly 0 (see gauss_computed in kernels/bk/_lns.py)."""
        em1 = _expm1(d)
        r = em1 + 1.0
        h = 0.5 * delta
        c = tl.sin(0.5 * (pi - tl.abs(delta)))
        s = tl.sin(h)
        u = 2.0 * r * c * c - em1
        v = 2.0 * r * s * c
        return 0.5 * tl.log(u * u + v * v), _atan2(v, u)

    @triton.jit
    def _gauss_table(d, delta, pi, tab_ptr, NR: tl.constexpr, ND: tl.constexpr):
        r = tl.exp(d)
        ad = tl.abs(delta)
        i = tl.floor(r * (NR - 1) + 0.5)
        j = tl.minimum(tl.floor(ad * ((ND - 1) / 3.141592653589793) + 0.5), ND - 1)
        eps = ad - j * (3.141592653589793 / (ND - 1))
        e2 = eps * eps
        dr = r * (1.0 - 0.5 * e2) - i * (1.0 / (NR - 1))
        di = r * eps * (1.0 - e2 * (1.0 / 6.0))
        base = (i.to(tl.int32) * ND + j.to(tl.int32)) * 6
        f0r = tl.load(tab_ptr + base)
        f0i = tl.load(tab_ptr + base + 1)
        c1r = tl.load(tab_ptr + base + 2)
        c1i = tl.load(tab_ptr + base + 3)
        c2r = tl.load(tab_ptr + base + 4)
        c2i = tl.load(tab_ptr + base + 5)
        tr = c1r + c2r * dr - c2i * di
        ti = c1i + c2r * di + c2i * dr
        gr = f0r + dr * tr - di * ti
        gi = f0i + dr * ti + di * tr
        gi = tl.where(delta < 0, -gi, gi)
        box = (r > 1.0 - TAU_C) & (ad > 3.141592653589793 - TAU_C)
        if tl.max(box.to(tl.int32), axis=0) > 0:  # some lane is near w = -1: compute g there
            cr, ci = _gauss_computed(d, delta, pi)
            gr = tl.where(box, cr, gr)
            gi = tl.where(box, ci, gi)
        return gr, gi

    TAU_C = tl.constexpr(TAU)

    @triton.jit
    def _add(lx, px, ly, py, pi, two_pi, inv_two_pi, tab_ptr,
             TABLE: tl.constexpr, NR: tl.constexpr, ND: tl.constexpr):
        """x + y in LNS through the Gaussian logarithm."""
        big = lx >= ly
        lmax = tl.where(big, lx, ly)
        lmin = tl.where(big, ly, lx)
        pmax = tl.where(big, px, py)
        pmin = tl.where(big, py, px)
        d = tl.where(lmax == -float("inf"), -float("inf"), lmin - lmax)
        delta = _wrap(pmin - pmax, two_pi, inv_two_pi)
        if TABLE:
            gr, gi = _gauss_table(d, delta, pi, tab_ptr, NR, ND)
        else:
            gr, gi = _gauss_computed(d, delta, pi)
        return lmax + gr, _wrap(pmax + gi, two_pi, inv_two_pi)

    @triton.jit
    def _alpha_lns(a_ptr, z_ptr, b, i, mask, A_CPLX: tl.constexpr):
        zr = tl.load(z_ptr + 2 * b, mask=mask, other=0.0)
        zi = tl.load(z_ptr + 2 * b + 1, mask=mask, other=1.0)
        if A_CPLX:
            ar = tl.load(a_ptr + 2 * i, mask=mask, other=0.0) - zr
            ai = tl.load(a_ptr + 2 * i + 1, mask=mask, other=0.0) - zi
        else:
            ar = tl.load(a_ptr + i, mask=mask, other=0.0) - zr
            ai = -zi
        return 0.5 * tl.log(ar * ar + ai * ai), _atan2(ai, ar)

    @triton.jit
    def _negk_lns(k_ptr, off, mask, pi, K_CPLX: tl.constexpr):
        """(log|k|, arg(-k)) at element offset ``off``; masked lanes give k = 0 = (-inf, 0)."""
        if K_CPLX:
            kr = tl.load(k_ptr + off, mask=mask, other=0.0)
            ki = tl.load(k_ptr + off + 1, mask=mask, other=0.0)
            ph = _atan2(-ki, -kr)
        else:
            kr = tl.load(k_ptr + off, mask=mask, other=0.0)
            ki = 0.0 * kr
            ph = tl.where(kr > 0, pi, 0.0 * kr)
        return 0.5 * tl.log(kr * kr + ki * ki), ph

    @triton.jit
    def _mat_step(p00l, p00p, p01l, p01p, p10l, p10p, p11l, p11p, al, ap, kl, kp, m,
                  pi, two_pi, inv_two_pi, tab_ptr, TABLE: tl.constexpr, NR: tl.constexpr, ND: tl.constexpr):
        """P <- M P, M = [[alpha, -k], [1, 0]], normalised; lanes with m False keep P."""
        n00l, n00p = _add(al + p00l, _wrap(ap + p00p, two_pi, inv_two_pi), kl + p10l,
                          _wrap(kp + p10p, two_pi, inv_two_pi), pi, two_pi, inv_two_pi, tab_ptr, TABLE, NR, ND)
        n01l, n01p = _add(al + p01l, _wrap(ap + p01p, two_pi, inv_two_pi), kl + p11l,
                          _wrap(kp + p11p, two_pi, inv_two_pi), pi, two_pi, inv_two_pi, tab_ptr, TABLE, NR, ND)
        s = tl.maximum(tl.maximum(n00l, n01l), tl.maximum(p00l, p01l))
        s = tl.where((s == float("inf")) | (s == -float("inf")), 0.0, s)
        return (tl.where(m, n00l - s, p00l), tl.where(m, n00p, p00p),
                tl.where(m, n01l - s, p01l), tl.where(m, n01p, p01p),
                tl.where(m, p00l - s, p10l), tl.where(m, p00p, p10p),
                tl.where(m, p01l - s, p11l), tl.where(m, p01p, p11p))

    @triton.jit
    def _transfer_kernel(a_ptr, k_ptr, z_ptr, const_ptr, tab_ptr, mat_ptr,
                         N, NC, LANES, skb, skn, C,
                         BLOCK: tl.constexpr, A_CPLX: tl.constexpr, K_CPLX: tl.constexpr,
                         TABLE: tl.constexpr, NR: tl.constexpr, ND: tl.constexpr, I64: tl.constexpr):
        pi = tl.load(const_ptr)
        two_pi = tl.load(const_ptr + 1)
        inv_two_pi = tl.load(const_ptr + 2)
        pid = tl.program_id(0)
        if I64:
            pid = pid.to(tl.int64)
        lane = pid * BLOCK + tl.arange(0, BLOCK)
        live = lane < LANES
        b = lane // NC
        c = lane % NC
        zero_l = tl.zeros([BLOCK], dtype=pi.dtype)
        ninf = zero_l - float("inf")
        for direction in tl.static_range(2):
            p00l = zero_l
            p00p = zero_l
            p01l = ninf
            p01p = zero_l
            p10l = ninf
            p10p = zero_l
            p11l = zero_l
            p11p = zero_l
            tt = 0
            while tt < C:  # a while loop: runtime bound, also under the CPU interpreter
                if direction == 0:
                    t = tt
                else:
                    t = C - 1 - tt
                i = c * C + t
                m = live & (i < N)
                al, ap = _alpha_lns(a_ptr, z_ptr, b, b * N + i, m, A_CPLX)
                if direction == 0:  # left bond k_{i-1}
                    kl, kp = _negk_lns(k_ptr, b * skb + (i - 1) * skn, m & (i >= 1), pi, K_CPLX)
                else:  # right bond k_i
                    kl, kp = _negk_lns(k_ptr, b * skb + i * skn, m & (i <= N - 2), pi, K_CPLX)
                p00l, p00p, p01l, p01p, p10l, p10p, p11l, p11p = _mat_step(
                    p00l, p00p, p01l, p01p, p10l, p10p, p11l, p11p, al, ap, kl, kp, m,
                    pi, two_pi, inv_two_pi, tab_ptr, TABLE, NR, ND)
                tt += 1
            base = (lane * 2 + direction) * 8
            tl.store(mat_ptr + base, p00l, mask=live)
            tl.store(mat_ptr + base + 1, p00p, mask=live)
            tl.store(mat_ptr + base + 2, p01l, mask=live)
            tl.store(mat_ptr + base + 3, p01p, mask=live)
            tl.store(mat_ptr + base + 4, p10l, mask=live)
            tl.store(mat_ptr + base + 5, p10p, mask=live)
            tl.store(mat_ptr + base + 6, p11l, mask=live)
            tl.store(mat_ptr + base + 7, p11p, mask=live)

    @triton.jit
    def _carry_kernel(mat_ptr, const_ptr, tab_ptr, carry_ptr, B, NC,
                      BLOCK: tl.constexpr, TABLE: tl.constexpr, NR: tl.constexpr, ND: tl.constexpr, I64: tl.constexpr):
        """carry[b, c, dir] = incoming pivot (log, arg) of chunk c (dir 0: D from the left; 1: E from the right)."""
        pi = tl.load(const_ptr)
        two_pi = tl.load(const_ptr + 1)
        inv_two_pi = tl.load(const_ptr + 2)
        pid = tl.program_id(0)
        if I64:
            pid = pid.to(tl.int64)
        b = pid * BLOCK + tl.arange(0, BLOCK)
        live = b < B
        zero_l = tl.zeros([BLOCK], dtype=pi.dtype)
        for direction in tl.static_range(2):
            hpl = zero_l
            hpp = zero_l
            hql = zero_l - float("inf")
            hqp = zero_l
            cc = 0
            while cc < NC:  # a while loop: runtime bound, also under the CPU interpreter
                if direction == 0:
                    c = cc
                else:
                    c = NC - 1 - cc
                out = ((b * NC + c) * 2 + direction) * 2
                tl.store(carry_ptr + out, hpl - hql, mask=live)
                tl.store(carry_ptr + out + 1, _wrap(hpp - hqp, two_pi, inv_two_pi), mask=live)
                base = ((b * NC + c) * 2 + direction) * 8
                m00l = tl.load(mat_ptr + base, mask=live, other=0.0)
                m00p = tl.load(mat_ptr + base + 1, mask=live, other=0.0)
                m01l = tl.load(mat_ptr + base + 2, mask=live, other=0.0)
                m01p = tl.load(mat_ptr + base + 3, mask=live, other=0.0)
                m10l = tl.load(mat_ptr + base + 4, mask=live, other=0.0)
                m10p = tl.load(mat_ptr + base + 5, mask=live, other=0.0)
                m11l = tl.load(mat_ptr + base + 6, mask=live, other=0.0)
                m11p = tl.load(mat_ptr + base + 7, mask=live, other=0.0)
                npl, npp = _add(m00l + hpl, _wrap(m00p + hpp, two_pi, inv_two_pi), m01l + hql,
                                _wrap(m01p + hqp, two_pi, inv_two_pi), pi, two_pi, inv_two_pi, tab_ptr,
                                TABLE, NR, ND)
                nql, nqp = _add(m10l + hpl, _wrap(m10p + hpp, two_pi, inv_two_pi), m11l + hql,
                                _wrap(m11p + hqp, two_pi, inv_two_pi), pi, two_pi, inv_two_pi, tab_ptr,
                                TABLE, NR, ND)
                s = tl.maximum(npl, nql)
                s = tl.where((s == float("inf")) | (s == -float("inf")), 0.0, s)
                hpl = npl - s
                hpp = npp
                hql = nql - s
                hqp = nqp
                cc += 1

    @triton.jit
    def _solve_kernel(a_ptr, k_ptr, z_ptr, const_ptr, tab_ptr, carry_ptr, out_ptr,
                      N, NC, LANES, skb, skn, C,
                      BLOCK: tl.constexpr, A_CPLX: tl.constexpr, K_CPLX: tl.constexpr,
                      TABLE: tl.constexpr, NR: tl.constexpr, ND: tl.constexpr, I64: tl.constexpr):
        pi = tl.load(const_ptr)
        two_pi = tl.load(const_ptr + 1)
        inv_two_pi = tl.load(const_ptr + 2)
        pid = tl.program_id(0)
        if I64:
            pid = pid.to(tl.int64)
        lane = pid * BLOCK + tl.arange(0, BLOCK)
        live = lane < LANES
        b = lane // NC
        c = lane % NC
        # forward pivots D_i = alpha_i - k_{i-1} / D_{i-1}, parked as (log, arg) in the output buffer
        cl = tl.load(carry_ptr + lane * 4, mask=live, other=0.0)
        cp = tl.load(carry_ptr + lane * 4 + 1, mask=live, other=0.0)
        t = 0
        while t < C:  # a while loop: runtime bound, also under the CPU interpreter
            i = c * C + t
            m = live & (i < N)
            al, ap = _alpha_lns(a_ptr, z_ptr, b, b * N + i, m, A_CPLX)
            kl, kp = _negk_lns(k_ptr, b * skb + (i - 1) * skn, m & (i >= 1), pi, K_CPLX)
            cl, cp = _add(al, ap, kl - cl, _wrap(kp - cp, two_pi, inv_two_pi), pi, two_pi, inv_two_pi,
                          tab_ptr, TABLE, NR, ND)
            tl.store(out_ptr + (b * N + i) * 2, cl, mask=m)
            tl.store(out_ptr + (b * N + i) * 2 + 1, cp, mask=m)
            t += 1
        # backward pivots E_i = alpha_i - R_i, R_i = k_i / E_{i+1}; G_i = 1 / (D_i - R_i)
        el = tl.load(carry_ptr + lane * 4 + 2, mask=live, other=0.0)
        ep = tl.load(carry_ptr + lane * 4 + 3, mask=live, other=0.0)
        tt = 0
        while tt < C:  # a while loop: runtime bound, also under the CPU interpreter
            i = c * C + (C - 1 - tt)
            m = live & (i < N)
            al, ap = _alpha_lns(a_ptr, z_ptr, b, b * N + i, m, A_CPLX)
            kl, kp = _negk_lns(k_ptr, b * skb + i * skn, m & (i <= N - 2), pi, K_CPLX)
            nrl = kl - el
            nrp = _wrap(kp - ep, two_pi, inv_two_pi)
            dl = tl.load(out_ptr + (b * N + i) * 2, mask=m, other=0.0)
            dp = tl.load(out_ptr + (b * N + i) * 2 + 1, mask=m, other=0.0)
            gl, gp = _add(dl, dp, nrl, nrp, pi, two_pi, inv_two_pi, tab_ptr, TABLE, NR, ND)
            mag = tl.exp(-gl)
            tl.store(out_ptr + (b * N + i) * 2, mag * tl.cos(gp), mask=m)
            tl.store(out_ptr + (b * N + i) * 2 + 1, -mag * tl.sin(gp), mask=m)
            nel, nep = _add(al, ap, nrl, nrp, pi, two_pi, inv_two_pi, tab_ptr, TABLE, NR, ND)
            el = tl.where(m, nel, el)
            ep = tl.where(m, nep, ep)
            tt += 1


def default_chunk(n: int) -> int:
    """C = next power of two >= sqrt(N), at least 16 (fewer, longer lanes), never above N's power of two."""
    c = 1 << max(0, math.ceil(math.log2(max(1.0, math.sqrt(n)))))
    return max(1, min(max(16, c), 1 << max(0, (n - 1).bit_length())))


def prepare(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> dict[str, Callable[[], Any]]:
    """Options, views, scratch buffers and constants; returns the launches as zero-argument callables:
    ``{"transfer": ..., "carry": ..., "solve": ..., "all": ...}`` (each stage in order; ``all`` runs the three
    and returns G (B, N) complex). Calling again overwrites the same buffers. Used by the device script to
    time each stage; :func:`lns_triton_core` is ``prepare(...)["all"]()``.
    """
    check_device(a, "lns_triton")
    opts = {**DEFAULTS, **options}
    check_lns_options(opts, "lns_triton")
    cdt = complex_work_dtype(a)
    check_table_precision(opts["gauss"], cdt)
    rdt = torch.float64 if cdt == torch.complex128 else torch.float32
    bsz, n = a.shape
    dev = a.device
    out = torch.empty((bsz, n), dtype=cdt, device=dev)
    chunk = opts["chunk"] or default_chunk(n)
    nc = -(-n // chunk)
    lanes = bsz * nc
    a_c = a.contiguous()
    a_view = torch.view_as_real(a_c) if a_c.is_complex() else a_c.to(rdt)
    if n > 1:
        kk = k.to(cdt if k.is_complex() else rdt)
        if is_uniform(kk):
            kk = kk[:1, :1].contiguous()
            skb = skn = 0
        else:
            kk = kk.contiguous()
            skb, skn = kk.stride()
        k_cplx = kk.is_complex()
        if k_cplx:
            skb, skn = 2 * skb, 2 * skn
        k_view = torch.view_as_real(kk) if k_cplx else kk
    else:
        k_view = torch.zeros(1, dtype=rdt, device=dev)
        skb = skn = 0
        k_cplx = False
    z_view = torch.view_as_real(z.to(cdt).contiguous())
    consts = torch.tensor([math.pi, 2.0 * math.pi, 1.0 / (2.0 * math.pi)], dtype=rdt, device=dev)
    table = opts["gauss"] == "table"
    nr, nd = tuple(opts["table_shape"])
    tab = build_gauss_table((nr, nd), rdt, dev) if table else torch.zeros(6, dtype=rdt, device=dev)
    mats = torch.empty((max(lanes, 1), 2, 8), dtype=rdt, device=dev)
    carry = torch.empty((max(lanes, 1), 2, 2), dtype=rdt, device=dev)
    block = 128 if lanes >= 128 * 64 else 32
    i64 = max(2 * bsz * n, 16 * lanes, 2 * bsz * (n - 1) * max(skn, 1)) >= 2**31 - 1  # else int32 offsets
    common = dict(A_CPLX=a_c.is_complex(), K_CPLX=k_cplx, TABLE=table, NR=nr, ND=nd, I64=i64)
    grid = (triton.cdiv(max(lanes, 1), block),)
    cblock = 32
    out_view = torch.view_as_real(out)

    def transfer() -> None:
        _transfer_kernel[grid](a_view, k_view, z_view, consts, tab, mats, n, nc, lanes, skb, skn, chunk,
                               BLOCK=block, **common)

    def carries() -> None:
        _carry_kernel[(triton.cdiv(bsz, cblock),)](mats, consts, tab, carry, bsz, nc,
                                                   BLOCK=cblock, TABLE=table, NR=nr, ND=nd, I64=i64)

    def solve() -> None:
        _solve_kernel[grid](a_view, k_view, z_view, consts, tab, carry, out_view, n, nc, lanes,
                            skb, skn, chunk, BLOCK=block, **common)

    def run_all() -> torch.Tensor:
        if out.numel():
            transfer()
            carries()
            solve()
        return out

    return {"transfer": transfer, "carry": carries, "solve": solve, "all": run_all}


def lns_triton_core(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex (CUDA, or CPU interpreter)."""
    return prepare(a, k, z, **options)["all"]()


@register(
    "lns_triton",
    kind="bk",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128),
    differentiable=False,
    defaults=dict(DEFAULTS),
    available=triton_available,
    supports=triton_supports,
    description="Triton: chunked LNS pivots (transfer matrices, carries, in-chunk pivots), Gaussian log",
)
def lns_triton(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128."""
    return lns_triton_core(a, k, z, **options)
