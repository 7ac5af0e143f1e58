"""Division passes and operand loading of the ``triton_fused`` kernels (docs/triton_fused.md).

Notation (shared math notes): alpha_i = a_i - z, k_i = b_i c_i (k_{-1} = k_{N-1} = 0),
left self-energy  L_i = k_{i-1} / D_{i-1},  D_i = alpha_i - L_i   (forward pivots),
right self-energy R_i = k_i / E_{i+1},      E_i = alpha_i - R_i   (backward pivots),
G_i = 1 / (alpha_i - L_i - R_i) = 1 / (E_i - L_i).

Operands reach the kernels as the user holds them (``_triton_fused_launch.Operands``): ``a`` (B, N) with a row
stride, the couplings as a scalar ``k`` value, one tensor times a value, two tensors ``b``, ``c`` (any strides,
broadcast views included) or one tensor squared, and ``z`` as a value or a per-chain tensor. Every load is cast to
float32 in registers and ``k = b * c`` is formed there; nothing is materialised in memory.
"""

from __future__ import annotations

from bkbench.kernels.bk._triton_fused_regs import (
    _at_seg,
    _cm,
    _rcp,
    _shift_next2,
    _shift_prev2,
    split_cols,
    store_cols,
    tl,
    triton,
)


@triton.jit
def _pivot_norm(dr, di, GUARD: tl.constexpr):
    """(Re D, |D|^2) of the pivot D = dr + i di. With GUARD a pivot with |D| < 1e-15 becomes dr + 1e-15: the
    result is that of T - zI with one diagonal entry moved at float32 rounding scale, finite wherever T - zI is
    not singular (a zero pivot is not a singular matrix: a = [0, 1], b = c = 1, z = 0 has G = [-1, 0])."""
    n = dr * dr + di * di
    if GUARD:
        small = n < 1e-30
        dr = tl.where(small, dr + 1e-15, dr)
        n = tl.where(small, dr * dr + di * di, n)
    return dr, n


@triton.jit
def _fwd_partial(acols, kcols, ai, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, M1: tl.constexpr):
    """Outgoing L (= k_e / D_e) of every segment from the guess L = 0 at position L - M1, and the
    contraction of that run (prod |k/D^2|: how much of the guess's error reaches the end)."""
    lr = tl.zeros([R, S], tl.float32)
    li = tl.zeros([R, S], tl.float32)
    pi = tl.full([R, S], 1.0, tl.float32)
    for i in tl.static_range(L - M1, L):
        dr = acols[i] - lr
        di = ai - li
        kt = kcols[i] * _rcp(dr * dr + di * di)
        pi = pi * tl.abs(kt)
        lr = kt * dr
        li = -kt * di
    return lr, li, pi


@triton.jit
def _fwd_full(acols, kcols, ai, lr, li, L: tl.constexpr, GUARD: tl.constexpr = False):
    """Full forward pass from the incoming L: returns (L_i columns re, im), outgoing L, contraction.

    GUARD (the exact path): a pivot D of exactly (or nearly) zero is moved off zero (see
    :func:`_pivot_norm`) instead of dividing by zero; the fast path leaves it unguarded (a zero pivot gives a
    NaN bound, which flags the chain for the exact path)."""
    lsr = ()
    lsi = ()
    pi = tl.full(lr.shape, 1.0, tl.float32)
    for i in tl.static_range(L):
        lsr = lsr + (lr,)
        lsi = lsi + (li,)
        dr = acols[i] - lr
        di = ai - li
        dr, n = _pivot_norm(dr, di, GUARD)
        kt = kcols[i] * _rcp(n)
        pi = pi * tl.abs(kt)
        lr = kt * dr
        li = -kt * di
    return lsr, lsi, lr, li, pi


@triton.jit
def _bwd_partial(acols, kcols, ai, R: tl.constexpr, S: tl.constexpr, M1: tl.constexpr):
    """1 / E at the first position of every segment from the guess R = 0 at position M1 - 1."""
    rr = tl.zeros([R, S], tl.float32)
    ri = tl.zeros([R, S], tl.float32)
    ier = rr
    iei = ri
    for i in tl.static_range(M1 - 1, -1, -1):
        er = acols[i] - rr
        ei = ai - ri
        t = _rcp(er * er + ei * ei)
        ier = er * t
        iei = -ei * t
        if i > 0:
            rr = kcols[i - 1] * ier
            ri = kcols[i - 1] * iei
    return ier, iei


@triton.jit
def _bwd_full(acols, kcols, ai, lsr, lsi, rr, ri, L: tl.constexpr, GUARD: tl.constexpr = False):
    """Full backward pass from the incoming R (at the last position) with G_i = 1/(E_i - L_i) (GUARD: zero
    pivots E as in :func:`_fwd_full`; a zero E - L is a singular matrix and gives an infinite G).

    Returns (G columns re, im), 1/E at the first position, contraction, |G_first|^2, |G_last|^2."""
    gr = ()
    gi = ()
    pi = tl.full(rr.shape, 1.0, tl.float32)
    ier = rr
    iei = ri
    g2_first = rr
    g2_last = rr
    for i in tl.static_range(L - 1, -1, -1):
        er = acols[i] - rr
        ei = ai - ri
        xr = er - lsr[i]
        xi = ei - lsi[i]
        tg = _rcp(xr * xr + xi * xi)
        gr = (xr * tg,) + gr
        gi = (-xi * tg,) + gi
        if i == L - 1:
            g2_last = tg
        if i == 0:
            g2_first = tg
        er, ne = _pivot_norm(er, ei, GUARD)
        t = _rcp(ne)
        ier = er * t
        iei = -ei * t
        if i > 0:
            kk = kcols[i - 1]
            pi = pi * tl.abs(kk * t)
            rr = kk * ier
            ri = kk * iei
    return gr, gi, ier, iei, pi, g2_first, g2_last


@triton.jit
def _tile_coords(B, NCH, CORE, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr):
    """This program's tile (one program per tile): see :func:`_tile_at`."""
    return _tile_at(tl.program_id(0), B, NCH, CORE, R, S, L, H)


@triton.jit
def _tile_at(t, B, NCH, CORE, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr):
    """Tile ``t``: chunk j of NCH (CORE positions, H halo segments each side) of chain rows ``rows`` [R]
    (``row_ok``: rows < B; every row of a tile t >= ceil(B / R) * NCH is out of range), first position ``start``,
    segment index ``seg1`` [S] / ``seg2`` [1, S], positions ``pos`` [R, S, L]."""
    rb = t // NCH
    j = t - rb * NCH
    rows = rb * R + tl.arange(0, R)
    row_ok = rows < B
    start = tl.multiple_of(j * CORE - H * L, L)
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    pos = start + seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
    return j, rows, row_ok, start, seg1, seg2, pos


@triton.jit
def _load_tile(ops, rows, row_ok, pos, N, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr,
               KM: tl.constexpr, ZM: tl.constexpr):
    """Load a [R, S, L] tile of alpha (Re; padded positions get alpha = 1) and k (0 outside 0..N-2).

    ``ops`` = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim): a (B, N) float32 /
    bf16 / fp16 with row stride sa (unit column stride); KM, how k is formed: 0 the value bval times cval (one
    scalar coupling: k columns are [1, S]), 1 the tensor b times the value cval, 2 the tensors b times c, 3 b times
    b, 4 the value at b_ptr times cval (a stride-0 k read once; [1, S] columns) (b, c: (B, N-1) real, element
    strides sb0/sb1, sc0/sc1); ZM: 0 the value zre + i zim, 1 a complex per-chain
    tensor viewed as real (re at z_ptr + row * sz, im at + 1), 2 a real per-chain tensor.
    Returns (alpha_re columns, k columns, Im alpha [R, 1], in-range mask [R, S, L])."""
    a, bt, ct, zr, zi = _load_raw(ops, rows, row_ok, pos, N, R, S, L, KM, ZM)
    acols, kcols, ai, m = _form_tile(ops, a, bt, ct, zr, zi, row_ok, pos, N, R, S, L, KM)
    return acols, kcols, ai, m


@triton.jit
def _load_raw(ops, rows, row_ok, pos, N, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr,
              KM: tl.constexpr, ZM: tl.constexpr):
    """The global loads of a tile, nothing computed from them (a persistent program issues the next tile's while it
    solves the current one): a [R, S, L] float32 (0 outside the chain), b and c [R, S, L] float32 where ``KM``
    reads them (0.0 otherwise), Re z and Im z [R] float32. Operands as :func:`_load_tile`."""
    a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim = ops
    rows_c = tl.where(row_ok, rows, 0)
    r64 = rows_c.to(tl.int64)
    m = row_ok[:, None, None] & (pos >= 0) & (pos < N)
    if ZM == 0:
        zr = zre + tl.zeros([R], tl.float32)
        zi = zim + tl.zeros([R], tl.float32)
    elif ZM == 1:
        zr = tl.load(z_ptr + r64 * sz).to(tl.float32)
        zi = tl.load(z_ptr + r64 * sz + 1).to(tl.float32)
    else:
        zr = tl.load(z_ptr + r64 * sz).to(tl.float32)
        zi = tl.zeros([R], tl.float32)
    a = tl.load(a_ptr + r64[:, None, None] * sa + pos, mask=m, other=0.0).to(tl.float32)
    bt = 0.0
    ct = 0.0
    if KM == 1 or KM == 2 or KM == 3:
        km = m & (pos < N - 1)
        bt = tl.load(b_ptr + r64[:, None, None] * sb0 + pos * sb1, mask=km, other=0.0).to(tl.float32)
        if KM == 2:
            ct = tl.load(c_ptr + r64[:, None, None] * sc0 + pos * sc1, mask=km, other=0.0).to(tl.float32)
    return a, bt, ct, zr, zi


@triton.jit
def _form_tile(ops, a, bt, ct, zr, zi, row_ok, pos, N, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr,
               KM: tl.constexpr):
    """:func:`_load_tile`'s result from :func:`_load_raw`'s loads: (alpha_re columns, k columns, Im alpha [R, 1],
    in-range mask [R, S, L])."""
    b_ptr = ops[2]
    bval = ops[5]
    cval = ops[9]
    m = row_ok[:, None, None] & (pos >= 0) & (pos < N)
    alpha = tl.where(m, a - zr[:, None, None], 1.0)
    acols = split_cols(alpha, R, S, L)
    kin = (pos >= 0) & (pos < N - 1)
    if KM == 0:
        kt = tl.where(kin, bval * cval, 0.0)
        kcols = split_cols(kt, 1, S, L)
    elif KM == 4:
        kt = tl.where(kin, tl.load(b_ptr).to(tl.float32) * cval, 0.0)
        kcols = split_cols(kt, 1, S, L)
    else:
        if KM == 1:
            kt = bt * cval
        elif KM == 2:
            kt = bt * ct
        else:
            kt = bt * bt
        kcols = split_cols(kt, R, S, L)
    ai = -zi[:, None]
    return acols, kcols, ai, m


# --------------------------------------------------------------------------------------------------------
# backward: the two linear recurrences F, R' and S_j = G_j^2 (F_j + R'_j - w_j)
# --------------------------------------------------------------------------------------------------------



@triton.jit
def _aff_comb(aar, aai, abr, abi, bar, bai, bbr, bbi):
    """Affine maps x -> A x + b composed: (b after a)."""
    ar, ai = _cm(bar, bai, aar, aai)
    br, bi = _cm(bar, bai, abr, abi)
    return ar, ai, br + bbr, bi + bbi


@triton.jit
def _load_cols2(ptr, rows, row_ok, pos, N, pad,
                R: tl.constexpr, S: tl.constexpr, L: tl.constexpr):
    """A complex (B, N) tensor viewed as float: the [R, S, L] tile as (re columns, im columns)."""
    rows_c = tl.where(row_ok, rows, 0)
    r64 = rows_c.to(tl.int64)[:, None, None, None]
    m = (row_ok[:, None, None] & (pos >= 0) & (pos < N))[:, :, :, None]
    off = r64 * (2 * N) + 2 * pos[:, :, :, None] + tl.arange(0, 2)[None, None, None, :]
    x = tl.load(ptr + off, mask=m, other=pad)
    re, im = tl.split(x)
    return split_cols(re, R, S, L), split_cols(im, R, S, L)


@triton.jit
def _grad_core(acols, kcols, ai, lsr, lsi, gr, gi, wr, wi, h0r, h0i, t0r, t0i, seg2,
               S: tl.constexpr, L: tl.constexpr, LIN_EXACT: tl.constexpr, GATHER: tl.constexpr):
    """The two linear recurrences and S_j for a tile, given the carries entering it.

    F_j = w_j + H_{j-1}, H_j = h_j F_j (h_j = k_j / D_j^2);  R_j = w_j + k_j T_{j+1}, T_j = e_j R_j
    (e_j = 1 / E_j^2, E_j = 1 / G_j + L_j). h0 = H entering segment 0, t0 = T entering segment S-1 from the
    right. LIN_EXACT = 1: exact affine scans across segments; 2: each segment's incoming carry composes its
    neighbour's map with the local result of the segment before (error |A_{s-1} A_{s-2}| |H|); 0: each segment
    takes its neighbour's local result (carry 0 one segment back: error |prod h| |H|). The caller bounds the
    errors of 0 and 2 with the returned contractions. Returns (S columns re, im), H leaving segment S-1, T
    leaving segment 0, and per segment |prod h| and |prod k e| (contractions)."""
    # per-position coefficients
    hr = ()
    hi = ()
    er = ()
    ei = ()
    for i in tl.static_range(L):
        dr = acols[i] - lsr[i]
        di = ai - lsi[i]
        t = _rcp(dr * dr + di * di)
        idr = dr * t
        idi = -di * t
        sr = (idr * idr - idi * idi) * kcols[i]
        si = (2.0 * idr * idi) * kcols[i]
        hr = hr + (sr,)
        hi = hi + (si,)
        # E = 1/G + L; e = 1/E^2
        tg = _rcp(gr[i] * gr[i] + gi[i] * gi[i])
        xr = gr[i] * tg + lsr[i]
        xi = -gi[i] * tg + lsi[i]
        te = _rcp(xr * xr + xi * xi)
        ur = xr * te
        ui = -xi * te
        er = er + (ur * ur - ui * ui,)
        ei = ei + (2.0 * ur * ui,)
    # local affine aggregates (carry 0)
    Ar = tl.full(lsr[0].shape, 1.0, tl.float32)
    Ai = tl.zeros(lsr[0].shape, tl.float32)
    br = tl.zeros(lsr[0].shape, tl.float32)
    bi = tl.zeros(lsr[0].shape, tl.float32)
    for i in tl.static_range(L):
        fr = wr[i] + br
        fi = wi[i] + bi
        br, bi = _cm(hr[i], hi[i], fr, fi)
        if LIN_EXACT:
            Ar, Ai = _cm(hr[i], hi[i], Ar, Ai)
        else:
            Ar = Ar * (tl.abs(hr[i]) + tl.abs(hi[i]))
    Cr = tl.full(lsr[0].shape, 1.0, tl.float32)
    Ci = tl.zeros(lsr[0].shape, tl.float32)
    cr = tl.zeros(lsr[0].shape, tl.float32)
    ci = tl.zeros(lsr[0].shape, tl.float32)
    for i in tl.static_range(L - 1, -1, -1):
        rr = wr[i] + kcols[i] * cr
        ri = wi[i] + kcols[i] * ci
        cr, ci = _cm(er[i], ei[i], rr, ri)
        if LIN_EXACT:
            xr, xi = _cm(er[i], ei[i], Cr, Ci)
            Cr = xr * kcols[i]
            Ci = xi * kcols[i]
        else:
            Cr = Cr * tl.abs(kcols[i]) * (tl.abs(er[i]) + tl.abs(ei[i]))
    contr_f = tl.abs(Ar) + tl.abs(Ai)
    contr_b = tl.abs(Cr) + tl.abs(Ci)
    if LIN_EXACT == 1:
        # scans across segments, with the incoming carries
        Ir, Ii, Jr, Ji = tl.associative_scan((Ar, Ai, br, bi), 1, _aff_comb)
        xr, xi = _cm(Ir, Ii, h0r, h0i)
        outr = xr + Jr
        outi = xi + Ji
        Kr, Ki, Mr, Mi = tl.associative_scan((Cr, Ci, cr, ci), 1, _aff_comb, reverse=True)
        xr, xi = _cm(Kr, Ki, t0r, t0i)
        o2r = xr + Mr
        o2i = xi + Mi
    elif LIN_EXACT == 2:
        # two segments: each composes its own map with its neighbour's local result (the tile's incoming
        # carry at the ends), exact up to the pair's contraction |A_s A_{s-1}| |H| (the caller bounds it)
        nbr, nbi = _shift_prev2(br, bi, seg2, GATHER)
        nbr = tl.where(seg2 == 0, h0r, nbr)
        nbi = tl.where(seg2 == 0, h0i, nbi)
        xr, xi = _cm(Ar, Ai, nbr, nbi)
        outr = xr + br
        outi = xi + bi
        ncr, nci = _shift_next2(cr, ci, seg2, S, GATHER)
        ncr = tl.where(seg2 == S - 1, t0r, ncr)
        nci = tl.where(seg2 == S - 1, t0i, nci)
        xr, xi = _cm(Cr, Ci, ncr, nci)
        o2r = xr + cr
        o2i = xi + ci
    else:
        outr = br
        outi = bi
        o2r = cr
        o2i = ci
    hinr, hini = _shift_prev2(outr, outi, seg2, GATHER)
    hinr = tl.where(seg2 == 0, h0r, hinr)
    hini = tl.where(seg2 == 0, h0i, hini)
    tinr, tini = _shift_next2(o2r, o2i, seg2, S, GATHER)
    tinr = tl.where(seg2 == S - 1, t0r, tinr)
    tini = tl.where(seg2 == S - 1, t0i, tini)
    # final passes: F forward (stored), then R backward with S_j
    fsr = ()
    fsi = ()
    hr_ = hinr
    hi_ = hini
    for i in tl.static_range(L):
        fr = wr[i] + hr_
        fi = wi[i] + hi_
        fsr = fsr + (fr,)
        fsi = fsi + (fi,)
        hr_, hi_ = _cm(hr[i], hi[i], fr, fi)
    ssr = ()
    ssi = ()
    tr_ = tinr
    ti_ = tini
    for i in tl.static_range(L - 1, -1, -1):
        rr = wr[i] + kcols[i] * tr_
        ri = wi[i] + kcols[i] * ti_
        g2r = gr[i] * gr[i] - gi[i] * gi[i]
        g2i = 2.0 * gr[i] * gi[i]
        xr, xi = _cm(g2r, g2i, fsr[i] + rr - wr[i], fsi[i] + ri - wi[i])
        ssr = (xr,) + ssr
        ssi = (xi,) + ssi
        tr_, ti_ = _cm(er[i], ei[i], rr, ri)
    hout_r = _at_seg(outr, seg2, S - 1)
    hout_i = _at_seg(outi, seg2, S - 1)
    tout_r = _at_seg(o2r, seg2, 0)
    tout_i = _at_seg(o2i, seg2, 0)
    return ssr, ssi, hout_r, hout_i, tout_r, tout_i, contr_f, contr_b


@triton.jit
def _store_s(o_ptr, ssr, ssi, rows, row_ok, start, N, seg1, H: tl.constexpr,
             R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, NEED_S: tl.constexpr, STORE: tl.constexpr):
    """Write -Re S (grad_a, float32 (B, N)) or S itself (complex64 (B, N) as float)."""
    if NEED_S:
        store_cols(o_ptr, ssr, ssi, rows, row_ok, start, N, seg1, H, R, S, L, True, STORE)
    else:
        neg = ()
        for i in tl.static_range(L):
            neg = neg + (-ssr[i],)
        store_cols(o_ptr, neg, neg, rows, row_ok, start, N, seg1, H, R, S, L, False, STORE)
