"""The exact path of ``triton_fused``: prefix products of normalised 2x2 Möbius matrices (exact for any z, zero
couplings and zero pivots included), one chain at a time (docs/triton_fused.md).

A chain is swept in chunks of S*L positions: sweep 1 (left to right) records the state vector entering each chunk
in a scratch row (MAXCH chunks x 4 floats forward, x 8 backward), sweep 2 (right to left) recomputes each
chunk's incoming carries, runs the division passes from exact carries (zero pivots guarded) and writes the result.
``exact_fwd_chain`` / ``exact_bwd_chain`` are called by the fast kernels for the chains they flag (the fold: no
second launch) and by the ``_fwd_exact_kernel`` / ``_bwd_exact_kernel`` launches (one program per chain) that
``force_exact`` uses.
"""

from __future__ import annotations

from bkbench.kernels.bk._triton_fused_passes import (
    _bwd_full,
    _fwd_full,
    _grad_core,
    _load_cols2,
    _load_tile,
    _store_s,
)
from bkbench.kernels.bk._triton_fused_regs import _cm, _shift_next, _shift_prev, store_cols, tl, triton


@triton.jit
def _cdiv_guarded(ar, ai, br, bi):
    """(ar + i ai) / (br + i bi) for state-vector components (normalised to a largest component of 1); a
    denominator below 1e-15 is moved to 1e-15 (a pivot of zero: see ``_pivot_norm``)."""
    n = br * br + bi * bi
    small = n < 1e-30
    br = tl.where(small, br + 1e-15, br)
    n = tl.where(small, br * br + bi * bi, n)
    t = 1.0 / n
    return (ar * br + ai * bi) * t, (ai * br - ar * bi) * t



@triton.jit
def _mat_comb(a00r, a00i, a01r, a01i, a10r, a10i, a11r, a11i,
              b00r, b00i, b01r, b01i, b10r, b10i, b11r, b11i):
    """b @ a, normalised by its largest component (the ratios are scale-free)."""
    x, y = _cm(b00r, b00i, a00r, a00i)
    u, v = _cm(b01r, b01i, a10r, a10i)
    c00r = x + u
    c00i = y + v
    x, y = _cm(b00r, b00i, a01r, a01i)
    u, v = _cm(b01r, b01i, a11r, a11i)
    c01r = x + u
    c01i = y + v
    x, y = _cm(b10r, b10i, a00r, a00i)
    u, v = _cm(b11r, b11i, a10r, a10i)
    c10r = x + u
    c10i = y + v
    x, y = _cm(b10r, b10i, a01r, a01i)
    u, v = _cm(b11r, b11i, a11r, a11i)
    c11r = x + u
    c11i = y + v
    s = tl.maximum(tl.maximum(tl.maximum(tl.abs(c00r), tl.abs(c00i)), tl.maximum(tl.abs(c01r), tl.abs(c01i))),
                   tl.maximum(tl.maximum(tl.abs(c10r), tl.abs(c10i)), tl.maximum(tl.abs(c11r), tl.abs(c11i))))
    s = tl.where(s > 0, 1.0 / s, 1.0)
    return c00r * s, c00i * s, c01r * s, c01i * s, c10r * s, c10i * s, c11r * s, c11i * s


@triton.jit
def _norm8(m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i):
    s = tl.maximum(tl.maximum(tl.maximum(tl.abs(m00r), tl.abs(m00i)), tl.maximum(tl.abs(m01r), tl.abs(m01i))),
                   tl.maximum(tl.maximum(tl.abs(m10r), tl.abs(m10i)), tl.maximum(tl.abs(m11r), tl.abs(m11i))))
    s = tl.where(s > 0, 1.0 / s, 1.0)
    return m00r * s, m00i * s, m01r * s, m01i * s, m10r * s, m10i * s, m11r * s, m11i * s


@triton.jit
def _seg_mats_fwd(acols, kcols, ai, L: tl.constexpr):
    """Per segment P = M_e ... M_s with M_i = [[alpha_i, -1], [k_i, 0]] acting on (theta_{i+1}, k_i theta_i)."""
    # start from M_s
    p00r = acols[0]
    p00i = ai + 0.0 * acols[0]
    p01r = -1.0 + 0.0 * acols[0]
    p01i = 0.0 * acols[0]
    p10r = kcols[0] + 0.0 * acols[0]
    p10i = 0.0 * acols[0]
    p11r = 0.0 * acols[0]
    p11i = 0.0 * acols[0]
    for i in tl.static_range(1, L):
        x0r, x0i = _cm(acols[i], ai, p00r, p00i)
        x1r, x1i = _cm(acols[i], ai, p01r, p01i)
        n00r = x0r - p10r
        n00i = x0i - p10i
        n01r = x1r - p11r
        n01i = x1i - p11i
        p10r = kcols[i] * p00r
        p10i = kcols[i] * p00i
        p11r = kcols[i] * p01r
        p11i = kcols[i] * p01i
        p00r = n00r
        p00i = n00i
        p01r = n01r
        p01i = n01i
        if i % 4 == 3:
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _norm8(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i)
    return _norm8(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i)


@triton.jit
def _seg_mats_bwd(acols, kcols, ai, L: tl.constexpr):
    """Per segment Q = N_s ... N_e with N_i = [[alpha_i, -k_i], [1, 0]] acting on (phi_i, phi_{i+1})."""
    q00r = acols[L - 1]
    q00i = ai + 0.0 * acols[L - 1]
    q01r = -kcols[L - 1] + 0.0 * acols[L - 1]
    q01i = 0.0 * acols[L - 1]
    q10r = 1.0 + 0.0 * acols[L - 1]
    q10i = 0.0 * acols[L - 1]
    q11r = 0.0 * acols[L - 1]
    q11i = 0.0 * acols[L - 1]
    for i in tl.static_range(L - 2, -1, -1):
        # Q <- N_i Q
        x0r, x0i = _cm(acols[i], ai, q00r, q00i)
        x1r, x1i = _cm(acols[i], ai, q01r, q01i)
        n00r = x0r - kcols[i] * q10r
        n00i = x0i - kcols[i] * q10i
        n01r = x1r - kcols[i] * q11r
        n01i = x1i - kcols[i] * q11i
        q10r = q00r
        q10i = q00i
        q11r = q01r
        q11i = q01i
        q00r = n00r
        q00i = n00i
        q01r = n01r
        q01i = n01i
        if (L - 1 - i) % 4 == 3:
            q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i = _norm8(q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i)
    return _norm8(q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i)


@triton.jit
def _apply(m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i, v0r, v0i, v1r, v1i):
    """(M v) for a 2x2 complex M and a 2-vector v, normalised by its largest component."""
    x, y = _cm(m00r, m00i, v0r, v0i)
    u, w = _cm(m01r, m01i, v1r, v1i)
    w0r = x + u
    w0i = y + w
    x, y = _cm(m10r, m10i, v0r, v0i)
    u, w = _cm(m11r, m11i, v1r, v1i)
    w1r = x + u
    w1i = y + w
    s = tl.maximum(tl.maximum(tl.abs(w0r), tl.abs(w0i)), tl.maximum(tl.abs(w1r), tl.abs(w1i)))
    s = tl.where(s > 0, 1.0 / s, 1.0)
    return w0r * s, w0i * s, w1r * s, w1i * s



@triton.jit
def _last_seg(x, seg2, S: tl.constexpr):
    """x[:, S-1] as a scalar (x: [1, S])."""
    return tl.sum(tl.sum(tl.where(seg2 == S - 1, x, 0.0), axis=1), axis=0)


@triton.jit
def _first_seg(x, seg2):
    return tl.sum(tl.sum(tl.where(seg2 == 0, x, 0.0), axis=1), axis=0)


@triton.jit
def _fwd_carries(acols, kcols, ai, seg2, v0r, v0i, v1r, v1i, S: tl.constexpr, L: tl.constexpr):
    """Exact incoming L of every segment of a [1, S, L] tile given the state vector entering the tile.

    Returns (L_in re, im [1, S], the state vector leaving the tile)."""
    p = _seg_mats_fwd(acols, kcols, ai, L)
    c = tl.associative_scan(p, 1, _mat_comb)
    w0r, w0i, w1r, w1i = _apply(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], v0r, v0i, v1r, v1i)
    o0r = _last_seg(w0r, seg2, S)
    o0i = _last_seg(w0i, seg2, S)
    o1r = _last_seg(w1r, seg2, S)
    o1i = _last_seg(w1i, seg2, S)
    s0r = tl.where(seg2 == 0, v0r, _shift_prev(w0r, seg2, False))
    s0i = tl.where(seg2 == 0, v0i, _shift_prev(w0i, seg2, False))
    s1r = tl.where(seg2 == 0, v1r, _shift_prev(w1r, seg2, False))
    s1i = tl.where(seg2 == 0, v1i, _shift_prev(w1i, seg2, False))
    lr, li = _cdiv_guarded(s1r, s1i, s0r, s0i)
    return lr, li, o0r, o0i, o1r, o1i


@triton.jit
def _bwd_carries(acols, kcols, ai, seg2, u0r, u0i, u1r, u1i, S: tl.constexpr, L: tl.constexpr):
    """Exact incoming R (at the last position) of every segment given the state vector right of the tile."""
    q = _seg_mats_bwd(acols, kcols, ai, L)
    c = tl.associative_scan(q, 1, _mat_comb, reverse=True)
    w0r, w0i, w1r, w1i = _apply(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], u0r, u0i, u1r, u1i)
    o0r = _first_seg(w0r, seg2)
    o0i = _first_seg(w0i, seg2)
    o1r = _first_seg(w1r, seg2)
    o1i = _first_seg(w1i, seg2)
    s0r = tl.where(seg2 == S - 1, u0r, _shift_next(w0r, seg2, S, False))
    s0i = tl.where(seg2 == S - 1, u0i, _shift_next(w0i, seg2, S, False))
    s1r = tl.where(seg2 == S - 1, u1r, _shift_next(w1r, seg2, S, False))
    s1i = tl.where(seg2 == S - 1, u1i, _shift_next(w1i, seg2, S, False))
    qr, qi = _cdiv_guarded(s1r, s1i, s0r, s0i)  # phi_{e+2} / phi_{e+1} = 1 / E_{e+1}
    kl = kcols[L - 1]
    return kl * qr, kl * qi, o0r, o0i, o1r, o1i


@triton.jit
def _unit_state():
    """The state vector (1, 0) (re/im of both components, float32 scalars) a chain's exact sweep starts from."""
    one = tl.full([], 1.0, tl.float32)
    zero = tl.full([], 0.0, tl.float32)
    return one, zero, zero, zero


@triton.jit
def _store_state(ptr, v0r, v0i, v1r, v1i):
    """Store a chunk's entry state (re/im of both components, float32 scalars) at ptr[0:4] of the carry buffer."""
    tl.store(ptr + 0, v0r)
    tl.store(ptr + 1, v0i)
    tl.store(ptr + 2, v1r)
    tl.store(ptr + 3, v1i)


@triton.jit
def _load_state(ptr):
    """Load the entry state that `_store_state` wrote at ptr[0:4]: (v0r, v0i, v1r, v1i), float32 scalars."""
    return tl.load(ptr + 0), tl.load(ptr + 1), tl.load(ptr + 2), tl.load(ptr + 3)


@triton.jit
def exact_fwd_chain(ops, g_ptr, carry_ptr, row, N, MAXCH, S: tl.constexpr, L: tl.constexpr,
                    KM: tl.constexpr, ZM: tl.constexpr):
    """Exact G of chain ``row`` (ops and modes as ``_load_tile``; g: (B, N, 2) float32 view of the complex64
    output; carry: (B, MAXCH, 4) float32 scratch)."""
    T = S * L
    nch = tl.cdiv(N, T)
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    rows = row + tl.arange(0, 1)
    row_ok = rows >= 0
    cbase = row.to(tl.int64) * MAXCH * 4
    v0r, v0i, v1r, v1i = _unit_state()
    c = 0
    while c < nch:
        _store_state(carry_ptr + cbase + c * 4, v0r, v0i, v1r, v1i)
        pos = c * T + seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
        acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, 1, S, L, KM, ZM)
        lr, li, v0r, v0i, v1r, v1i = _fwd_carries(acols, kcols, ai, seg2, v0r, v0i, v1r, v1i, S, L)
        c += 1
    u0r, u0i, u1r, u1i = _unit_state()
    c = nch - 1
    while c >= 0:
        pos = c * T + seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
        acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, 1, S, L, KM, ZM)
        w0r, w0i, w1r, w1i = _load_state(carry_ptr + cbase + c * 4)
        lr, li, t0r, t0i, t1r, t1i = _fwd_carries(acols, kcols, ai, seg2, w0r, w0i, w1r, w1i, S, L)
        rr, ri, u0r, u0i, u1r, u1i = _bwd_carries(acols, kcols, ai, seg2, u0r, u0i, u1r, u1i, S, L)
        lsr, lsi, o1, o2, o3 = _fwd_full(acols, kcols, ai, lr, li, L, True)
        gr, gi, o4, o5, o6, o7, o8 = _bwd_full(acols, kcols, ai, lsr, lsi, rr, ri, L, True)
        store_cols(g_ptr, gr, gi, rows, row_ok, c * T, N, seg1, 0, 1, S, L, True, 0)
        c -= 1


@triton.jit
def _fwd_exact_kernel(a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim,
                      g_ptr, carry_ptr, N, MAXCH,
                      S: tl.constexpr, L: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr):
    """Exact G for every chain, one program per chain (``force_exact``; arguments as ``_fwd_fast_kernel``)."""
    ops = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim)
    exact_fwd_chain(ops, g_ptr, carry_ptr, tl.program_id(0), N, MAXCH, S, L, KM, ZM)


@triton.jit
def _exact_bwd_tile(ops, g_ptr, go_ptr, rows, row_ok, start, N,
                    S: tl.constexpr, L: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr):
    """One chunk (S*L positions from ``start``) of one chain for ``exact_bwd_chain``: alpha and k columns, Im
    alpha, G columns (re, im) and w = conj(grad_G) columns (re, im)."""
    pos = start + tl.arange(0, S)[None, :, None] * L + tl.arange(0, L)[None, None, :]
    acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, 1, S, L, KM, ZM)
    gr, gi = _load_cols2(g_ptr, rows, row_ok, pos, N, 1.0, 1, S, L)
    wr, wim = _load_cols2(go_ptr, rows, row_ok, pos, N, 0.0, 1, S, L)
    wi = ()
    for i in tl.static_range(L):
        wi = wi + (-wim[i],)
    return acols, kcols, ai, gr, gi, wr, wi


@triton.jit
def exact_bwd_chain(ops, g_ptr, go_ptr, o_ptr, carry_ptr, row, N, MAXCH,
                    S: tl.constexpr, L: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr, NEED_S: tl.constexpr):
    """Exact vector-Jacobian product of chain ``row``: sweep 1 (left to right) records, per chunk, the Möbius state
    and the H carry entering it in carry (B, MAXCH, 8) float32; sweep 2 (right to left) recomputes L and F per
    chunk, runs the T carry and writes grad_a = -Re S (or S when NEED_S) into o."""
    T = S * L
    nch = tl.cdiv(N, T)
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    rows = row + tl.arange(0, 1)
    row_ok = rows >= 0
    cbase = row.to(tl.int64) * MAXCH * 8
    v0r, v0i, v1r, v1i = _unit_state()
    h_r = tl.zeros([1, 1], tl.float32)
    h_i = tl.zeros([1, 1], tl.float32)
    zero = tl.zeros([1, 1], tl.float32)
    c = 0
    while c < nch:
        _store_state(carry_ptr + cbase + c * 8, v0r, v0i, v1r, v1i)
        tl.store(carry_ptr + cbase + c * 8 + 4 + tl.arange(0, 1)[:, None], h_r)
        tl.store(carry_ptr + cbase + c * 8 + 5 + tl.arange(0, 1)[:, None], h_i)
        acols, kcols, ai, gr, gi, wr, wi = _exact_bwd_tile(ops, g_ptr, go_ptr, rows, row_ok, c * T, N, S, L, KM, ZM)
        lr, li, v0r, v0i, v1r, v1i = _fwd_carries(acols, kcols, ai, seg2, v0r, v0i, v1r, v1i, S, L)
        lsr, lsi, o1, o2, o3 = _fwd_full(acols, kcols, ai, lr, li, L, True)
        ssr, ssi, hr1, hi1, tr1, ti1, cf, cb = _grad_core(acols, kcols, ai, lsr, lsi, gr, gi, wr, wi,
                                                          h_r, h_i, zero, zero, seg2, S, L, 1, False)
        h_r = hr1[:, None]
        h_i = hi1[:, None]
        c += 1
    t_r = tl.zeros([1, 1], tl.float32)
    t_i = tl.zeros([1, 1], tl.float32)
    c = nch - 1
    while c >= 0:
        acols, kcols, ai, gr, gi, wr, wi = _exact_bwd_tile(ops, g_ptr, go_ptr, rows, row_ok, c * T, N, S, L, KM, ZM)
        w0r, w0i, w1r, w1i = _load_state(carry_ptr + cbase + c * 8)
        hcr = tl.load(carry_ptr + cbase + c * 8 + 4 + tl.arange(0, 1)[:, None])
        hci = tl.load(carry_ptr + cbase + c * 8 + 5 + tl.arange(0, 1)[:, None])
        lr, li, o0, o1, o2, o3 = _fwd_carries(acols, kcols, ai, seg2, w0r, w0i, w1r, w1i, S, L)
        lsr, lsi, o4, o5, o6 = _fwd_full(acols, kcols, ai, lr, li, L, True)
        ssr, ssi, hr1, hi1, tr1, ti1, cf, cb = _grad_core(acols, kcols, ai, lsr, lsi, gr, gi, wr, wi,
                                                          hcr, hci, t_r, t_i, seg2, S, L, 1, False)
        t_r = tr1[:, None]
        t_i = ti1[:, None]
        _store_s(o_ptr, ssr, ssi, rows, row_ok, c * T, N, seg1, 0, 1, S, L, NEED_S, 0)
        c -= 1


@triton.jit
def _bwd_exact_kernel(a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim,
                      g_ptr, go_ptr, o_ptr, carry_ptr, N, MAXCH,
                      S: tl.constexpr, L: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr, NEED_S: tl.constexpr):
    """Exact vector-Jacobian product for every chain, one program per chain (``force_exact``)."""
    ops = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim)
    exact_bwd_chain(ops, g_ptr, go_ptr, o_ptr, carry_ptr, tl.program_id(0), N, MAXCH, S, L, KM, ZM, NEED_S)
