"""Triton kernels of ``triton_fused`` (see kernels/triton_fused.py for the launchers and docs/triton_fused.md).

Notation (shared math notes): alpha_i = a_i - z, k_i = b_i c_i (k_{-1} = k_{N-1} = 0),
left self-energy  L_i = k_{i-1} / D_{i-1},  D_i = alpha_i - L_i   (forward pivots),
right self-energy R_i = k_i / E_{i+1},      E_i = alpha_i - R_i   (backward pivots),
G_i = 1 / (alpha_i - L_i - R_i) = 1 / (E_i - L_i).

Tiles. A program owns a tile of ``R`` chain rows x ``S`` segments x ``L`` consecutive positions. The tile is
loaded with coalesced (vectorised) loads and split into ``L`` column tensors of shape [R, S] in registers
(reshape + ``tl.split`` tree), so thread t runs the pivot recursion of its own segment(s) sequentially while
all segments advance together. Output columns are joined back into one [R, S, L, 2] tile and written as
interleaved (Re, Im) pairs into a float32 view of the complex64 output.

Carries between segments (the fast path, ``_fwd_fast_kernel``). The pivot recursions forget their start:
an error dL in L at a segment start reaches the end multiplied by prod_i k_i / (D_i D_i'), so a recursion
started from a guess converges to the true trajectory. Pass 1 runs the last ``M1`` positions of every
segment from the guess L = 0 and hands its end value to the next segment (a gather along the segment
axis); pass 2 runs every segment in full from that carry. The change of each carry between the two passes
(dL) bounds the remaining error when the recursions contract (prod |k/D^2| <= 1/2 over a segment): the
error of G at the first position of the next segment is <= 2 |dL| |G|. If the bound exceeds ``tol`` the
program runs more full passes (each uses the previous pass's carries) up to ``MAXPASS`` and otherwise
raises a per-chain flag. The same holds backwards for R. Chains longer than one tile are split into chunks
with ``H`` halo segments on each side; the halo start is a guess, and its error estimate is the product of
the per-segment contractions over the halo.

Flagged chains are recomputed by ``_fwd_exact_kernel`` (one program per chain, loop over chunks): exact
prefix products of normalised 2x2 Möbius matrices per segment, ``tl.associative_scan`` across segments,
carries across chunks, then the same division passes. It is exact for any z (no convergence assumption).

Backward (``_bwd_fast_kernel``): S_j = G_j^2 (F_j + R'_j - w_j) with w = conj(grad_G) and the two linear
recurrences F_j = w_j + h_{j-1} F_{j-1} (h_j = k_j / D_j^2) and R'_j = w_j + k_j e_{j+1} R'_{j+1}
(e_j = 1 / E_j^2). D comes from the same fast forward passes, E from the saved G (E = 1/G + L); both
recurrences are exact affine scans across segments inside the tile (halo across chunks).
"""

from __future__ import annotations

import os

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is optional; keep the module importable (nothing runs)
    from types import SimpleNamespace

    triton = SimpleNamespace(jit=lambda fn: fn)
    tl = None

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# --------------------------------------------------------------------------------------------------------
# register-level helpers
# --------------------------------------------------------------------------------------------------------


if _INTERPRET:

    @triton.jit
    def _rcp(x):
        """1/x (the CPU interpreter: exact division)."""
        return 1.0 / x

else:

    @triton.jit
    def _rcp(x):
        """1/x by one MUFU.RCP (rcp.approx.ftz: relative error < 2^-22, flushes subnormals)."""
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)


@triton.jit
def _split_half(x, R: tl.constexpr, S: tl.constexpr, W: tl.constexpr):
    return tl.split(tl.reshape(x, [R, S, W // 2, 2]))


@triton.jit
def split_cols(x, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr):
    """[R, S, L] -> tuple of L tensors [R, S] (column i = x[:, :, i]), by a tree of register splits."""
    cols = (x,)
    for lev in tl.static_range(L.bit_length() - 1):
        new = ()
        for j in tl.static_range(len(cols)):
            e, o = _split_half(cols[j], R, S, L >> lev)
            new = new + (e,)
        for j in tl.static_range(len(cols)):
            e, o = _split_half(cols[j], R, S, L >> lev)
            new = new + (o,)
        cols = new
    out = ()
    for i in tl.static_range(L):
        out = out + (tl.reshape(cols[i], [R, S]),)
    return out


@triton.jit
def join_cols(cols, R: tl.constexpr, S: tl.constexpr, L: tl.constexpr):
    """Inverse of :func:`split_cols`: tuple of L tensors [R, S] -> [R, S, L]."""
    cur = ()
    for i in tl.static_range(L):
        cur = cur + (tl.reshape(cols[i], [R, S, 1]),)
    for lev in tl.static_range(L.bit_length() - 1):
        new = ()
        for j in tl.static_range(L >> (lev + 1)):
            new = new + (tl.reshape(tl.join(cur[j], cur[j + (L >> (lev + 1))]), [R, S, (2 << lev)]),)
        cur = new
    return cur[0]


@triton.jit
def store_cols(ptr, cols, cols_im, rows, row_ok, start, N, seg1, H: tl.constexpr,
               R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, CPLX: tl.constexpr, STORE: tl.constexpr):
    """Write L columns [R, S] of a (B, N) float32 tensor (CPLX: complex64 viewed as float, (re, im) pairs from
    ``cols`` and ``cols_im``) for the tile at ``start``; halo segments (H each side) are not written.

    STORE = 0: join the columns into one [R, S, L(, 2)] tile (tree of register joins) and store it; Triton
    converts the tile to its coalesced store layout, which it does level by level (one shared-memory round
    trip and two barriers per join). STORE = 1: one store per column (each thread writes its segment's
    position i; no layout conversion, strided across threads). STORE = 2: one store per pair of columns
    (16-byte stores for complex, 8-byte for real)."""
    rows_c = tl.where(row_ok, rows, 0)
    r64 = rows_c.to(tl.int64)[:, None, None]
    seg3 = seg1[None, :, None]
    core3 = row_ok[:, None, None] & (seg3 >= H) & (seg3 < S - H)
    W: tl.constexpr = 2 if CPLX else 1
    if STORE == 0:
        if CPLX:
            out = tl.reshape(tl.join(join_cols(cols, R, S, L), join_cols(cols_im, R, S, L)), [R, S, 2 * L])
        else:
            out = join_cols(cols, R, S, L)
        p = W * start + seg3 * (W * L) + tl.arange(0, W * L)[None, None, :]
        tl.store(ptr + r64 * (W * N) + p, out, mask=core3 & (p >= 0) & (p < W * N))
    else:
        V: tl.constexpr = STORE
        base = W * start + seg3 * (W * L) + tl.arange(0, W * V)[None, None, :]
        for i in tl.static_range(0, L, V):
            if V == 1:
                if CPLX:
                    v = tl.reshape(tl.join(cols[i], cols_im[i]), [R, S, 2])
                else:
                    v = tl.reshape(cols[i], [R, S, 1])
            else:
                if CPLX:  # [re_i, im_i, re_i+1, im_i+1]
                    v = tl.reshape(tl.join(tl.join(cols[i], cols[i + 1]), tl.join(cols_im[i], cols_im[i + 1])),
                                   [R, S, 4])
                else:
                    v = tl.reshape(tl.join(cols[i], cols[i + 1]), [R, S, 2])
            p = base + W * i
            tl.store(ptr + r64 * (W * N) + p, v, mask=core3 & (p >= 0) & (p < W * N))


@triton.jit
def _shift_comb1(av, ap, asg, bv, bp, bsg):
    """Monoid of a range: (last value, value before it, single?); scanned it yields the previous value."""
    return bv, tl.where(bsg != 0, av, bp), bsg * 0


@triton.jit
def _shift_comb2(av, aw, ap, aq, asg, bv, bw, bp, bq, bsg):
    return bv, bw, tl.where(bsg != 0, av, bp), tl.where(bsg != 0, aw, bq), bsg * 0


@triton.jit
def _shift_prev(x, seg2, GATHER: tl.constexpr):
    """y[:, s] = x[:, s-1], y[:, 0] = 0 (x: [R, S], seg2: [1, S] segment index).

    GATHER (one-warp tiles): ``tl.gather`` along the segment axis, which Triton lowers to one shuffle per
    register when the axis lies in one warp (the scan below was 30 % of the one-warp forward kernel's
    instructions). Otherwise a scan of the (last, previous, single) monoid: it keeps the tile's layout, where a
    gather across warps makes Triton replicate the tile in every warp (2-25x slower, measured)."""
    if GATHER:
        idx = tl.maximum(seg2 - 1, 0) + tl.zeros(x.shape, tl.int32)
        return tl.where(seg2 == 0, 0.0, tl.gather(x, idx, 1))
    else:
        one = tl.full(x.shape, 1, tl.int32)
        v, p, f = tl.associative_scan((x, x * 0.0, one), 1, _shift_comb1)
        return p


@triton.jit
def _shift_next(x, seg2, S: tl.constexpr, GATHER: tl.constexpr):
    """y[:, s] = x[:, s+1], y[:, S-1] = 0."""
    if GATHER:
        idx = tl.minimum(seg2 + 1, S - 1) + tl.zeros(x.shape, tl.int32)
        return tl.where(seg2 == S - 1, 0.0, tl.gather(x, idx, 1))
    else:
        one = tl.full(x.shape, 1, tl.int32)
        v, p, f = tl.associative_scan((x, x * 0.0, one), 1, _shift_comb1, reverse=True)
        return p


@triton.jit
def _shift_prev2(x, y, seg2, GATHER: tl.constexpr):
    if GATHER:
        return _shift_prev(x, seg2, True), _shift_prev(y, seg2, True)
    else:
        one = tl.full(x.shape, 1, tl.int32)
        v, w, p, q, f = tl.associative_scan((x, y, x * 0.0, y * 0.0, one), 1, _shift_comb2)
        return p, q


@triton.jit
def _shift_next2(x, y, seg2, S: tl.constexpr, GATHER: tl.constexpr):
    if GATHER:
        return _shift_next(x, seg2, S, True), _shift_next(y, seg2, S, True)
    else:
        one = tl.full(x.shape, 1, tl.int32)
        v, w, p, q, f = tl.associative_scan((x, y, x * 0.0, y * 0.0, one), 1, _shift_comb2, reverse=True)
        return p, q


@triton.jit
def _at_seg(x, seg2, s):
    """x[:, s] as an [R] tensor (x: [R, S])."""
    return tl.sum(tl.where(seg2 == s, x, 0.0), axis=1)


# --------------------------------------------------------------------------------------------------------
# division passes (the pivot recursions on columns)
# --------------------------------------------------------------------------------------------------------


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
def _fwd_full(acols, kcols, ai, lr, li, L: tl.constexpr):
    """Full forward pass from the incoming L: returns (L_i columns re, im), outgoing L, contraction."""
    lsr = ()
    lsi = ()
    pi = tl.full(lr.shape, 1.0, tl.float32)
    for i in tl.static_range(L):
        lsr = lsr + (lr,)
        lsi = lsi + (li,)
        dr = acols[i] - lr
        di = ai - li
        kt = kcols[i] * _rcp(dr * dr + di * di)
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
def _bwd_full(acols, kcols, ai, lsr, lsi, rr, ri, L: tl.constexpr):
    """Full backward pass from the incoming R (at the last position) with G_i = 1/(E_i - L_i).

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
        t = _rcp(er * er + ei * ei)
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
    """This program's tile: chunk j of NCH (CORE positions, H halo segments each side) of chain rows
    ``rows`` [R] (``row_ok``: rows < B), first position ``start``, segment index ``seg1`` [S] / ``seg2``
    [1, S], positions ``pos`` [R, S, L]."""
    pid = tl.program_id(0)
    rb = pid // NCH
    j = pid - rb * NCH
    rows = rb * R + tl.arange(0, R)
    row_ok = rows < B
    start = tl.multiple_of(j * CORE - H * L, L)
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    pos = start + seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
    return j, rows, row_ok, start, seg1, seg2, pos


@triton.jit
def _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N,
               R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, K_SCALAR: tl.constexpr):
    """Load a [R, S, L] tile of alpha (Re; padded positions get alpha = 1) and k (0 outside 0..N-2).

    Returns (alpha_re columns, k columns, Im alpha [R, 1], in-range mask [R, S, L])."""
    rows_c = tl.where(row_ok, rows, 0)
    r64 = rows_c.to(tl.int64)[:, None, None]
    m = row_ok[:, None, None] & (pos >= 0) & (pos < N)
    zr = tl.load(z_ptr + 2 * rows_c)
    zi = tl.load(z_ptr + 2 * rows_c + 1)
    a = tl.load(a_ptr + r64 * N + pos, mask=m, other=0.0).to(tl.float32)
    alpha = tl.where(m, a - zr[:, None, None], 1.0)
    acols = split_cols(alpha, R, S, L)
    kin = (pos >= 0) & (pos < N - 1)
    if K_SCALAR:
        kv = tl.load(k_ptr).to(tl.float32)
        kt = tl.where(kin, kv, 0.0)
        kcols = split_cols(kt, 1, S, L)
    else:
        kt = tl.load(k_ptr + r64 * (N - 1) + pos, mask=m & kin, other=0.0).to(tl.float32)
        kcols = split_cols(kt, R, S, L)
    ai = -zi[:, None]
    return acols, kcols, ai, m


# --------------------------------------------------------------------------------------------------------
# forward, fast path
# --------------------------------------------------------------------------------------------------------


@triton.jit
def _full_pass(acols, kcols, ai, seg2, kl, akl, pr, pi_, qr, qi, lcr, lci, lcd, ecr, eci, ecd,
               S: tl.constexpr, L: tl.constexpr, H: tl.constexpr, CARRY: tl.constexpr, GATHER: tl.constexpr):
    """One full pass of a tile in both directions from the previous pass's outgoing carries (``pr + i pi_``:
    L leaving each segment, ``qr + i qi``: 1/E at each segment's first position), with the incoming tile
    carries injected when CARRY (see :func:`_solve_tile`), and its a-posteriori error.

    The error of G at a segment's first (last) position is <= 2 |dL| |G| (2 |dR| |G|), dL (dR) being the change
    of the carry it started from between the previous pass and this one. Returns (G re / im columns, L re / im
    columns, incoming R of every segment's last position (re, im), this pass's outgoing carries (L re, im; 1/E re,
    im), their change in 1/E [R, S], the contraction of each segment forwards and backwards [R, S], |G|^2 at
    each segment's first and last position [R, S], squared error bound per segment [R, S] (0 in the H halo
    segments each side))."""
    c1r, c1i = _shift_prev2(pr, pi_, seg2, GATHER)
    e1r, e1i = _shift_next2(qr, qi, seg2, S, GATHER)
    if CARRY:
        c1r = tl.where(seg2 == 0, lcr[:, None], c1r)
        c1i = tl.where(seg2 == 0, lci[:, None], c1i)
        e1r = tl.where(seg2 == S - 1, ecr[:, None], e1r)
        e1i = tl.where(seg2 == S - 1, eci[:, None], e1i)
    lsr, lsi, p2r, p2i, pif = _fwd_full(acols, kcols, ai, c1r, c1i, L)
    rinr = kl * e1r
    rini = kl * e1i
    gr, gi, q2r, q2i, pib, g2f, g2l = _bwd_full(acols, kcols, ai, lsr, lsi, rinr, rini, L)
    dqs = tl.abs(q2r - qr) + tl.abs(q2i - qi)
    dfp = _shift_prev(tl.abs(p2r - pr) + tl.abs(p2i - pi_), seg2, GATHER)
    db = akl * _shift_next(dqs, seg2, S, GATHER)
    if CARRY:
        dfp = tl.where(seg2 == 0, lcd[:, None], dfp)
        db = tl.where(seg2 == S - 1, akl * ecd[:, None], db)
    core = (seg2 >= H) & (seg2 < S - H)  # the halo segments' G is not kept
    err = tl.where(core, 4.0 * (dfp * dfp * g2f + db * db * g2l), 0.0)
    return gr, gi, lsr, lsi, rinr, rini, p2r, p2i, q2r, q2i, dqs, pif, pib, g2f, g2l, err


@triton.jit
def _solve_tile(acols, kcols, ai, seg2, tol, lcr, lci, lcd, ecr, eci, ecd,
                R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr, M1: tl.constexpr,
                MAXPASS: tl.constexpr, CARRY: tl.constexpr, GATHER: tl.constexpr):
    """The division passes of one loaded tile: G columns, the per-row verdict and the outgoing carries.

    Segments hand their carries to each other (pass 1 from guesses, pass 2 from the pass-1 carries, more
    passes while the error bound fails, up to MAXPASS). The first segment starts from L = 0 and the last ends
    on R = 0 (a chain's ends, or halo guesses when H > 0), unless CARRY: then segment 0 starts from the
    incoming left carry (``lcr + i lci``: L at the tile's first position, [R]; ``lcd``: its error estimate) and
    segment S-1 ends on the incoming right carry (``ecr + i eci``: 1/E at the first position after the tile;
    ``ecd``: its error estimate), both counted in the verdict.

    Returns (G re columns, G im columns, bad [R] (carries not converged, no contraction, NaN, or halo error
    over ``tol``), 1/E at every segment's first position (re, im [R, S]), the change of those in the last
    pass [R, S])."""
    kl = kcols[L - 1]  # coupling to the next segment
    akl = tl.abs(kl)

    # pass 1 (partial, from guesses) in both directions, then pass 2 (full) from the pass-1 carries
    p1r, p1i, pip = _fwd_partial(acols, kcols, ai, R, S, L, M1)
    q1r, q1i = _bwd_partial(acols, kcols, ai, R, S, M1)
    gr, gi, lsr, lsi, rinr, rini, p2r, p2i, q2r, q2i, dqs, pif, pib, g2f, g2l, err = _full_pass(
        acols, kcols, ai, seg2, kl, akl, p1r, p1i, q1r, q1i, lcr, lci, lcd, ecr, eci, ecd, S, L, H, CARRY, GATHER)
    pimax = tl.maximum(pif, pib)
    ok = ((tl.max(err) <= tol * tol) & (tl.max(pimax) <= 0.5)).to(tl.int32)
    if MAXPASS > 2:
        npass = 2
        while (ok == 0) & (npass < MAXPASS):  # more full passes, each from the previous pass's carries
            gr, gi, lsr, lsi, rinr, rini, p2r, p2i, q2r, q2i, dqs, pif, pib, g2f, g2l, err = _full_pass(
                acols, kcols, ai, seg2, kl, akl, p2r, p2i, q2r, q2i, lcr, lci, lcd, ecr, eci, ecd, S, L, H, CARRY,
                GATHER)
            pimax = tl.maximum(pif, pib)
            ok = ((tl.max(err) <= tol * tol) & (tl.max(pimax) <= 0.5)).to(tl.int32)
            npass += 1

    # per-row verdict: carry convergence, contraction, and (chunked chains) the halo estimate
    bad = (tl.max(err, axis=1) > tol * tol) | (tl.max(pimax, axis=1) > 0.5)
    bad = bad | (tl.max(err, axis=1) != tl.max(err, axis=1))  # NaN
    if H > 0:
        # error entering the core from the halo guesses: |L| (resp. |R|) times the halo contraction
        lfl = tl.sum(tl.where(seg2 < H, tl.log2(tl.maximum(pif, 1e-30)), 0.0), axis=1)
        lfr = tl.sum(tl.where(seg2 >= S - H, tl.log2(tl.maximum(pib, 1e-30)), 0.0), axis=1)
        l0 = _at_seg(tl.abs(lsr[0]) + tl.abs(lsi[0]), seg2, H)
        r0 = _at_seg(tl.abs(rinr) + tl.abs(rini), seg2, S - H - 1)
        e_l = tl.exp2(2.0 * lfl) * l0 * l0 * _at_seg(g2f, seg2, H)
        e_r = tl.exp2(2.0 * lfr) * r0 * r0 * _at_seg(g2l, seg2, S - H - 1)
        bad = bad | (4.0 * (e_l + e_r) > tol * tol) | (e_l + e_r != e_l + e_r)
    return gr, gi, bad, q2r, q2i, dqs


@triton.jit
def _fwd_fast_kernel(a_ptr, k_ptr, z_ptr, g_ptr, flag_ptr,
                     B, N, NCH, CORE, tol,
                     R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr,
                     M1: tl.constexpr, MAXPASS: tl.constexpr, K_SCALAR: tl.constexpr, STORE: tl.constexpr = 0,
                     GATHER: tl.constexpr = False):
    """G for a tile of R chains x one chunk (CORE positions, plus H halo segments each side).

    a: (B, N) float32/bf16/fp16; k: (B, N-1) same dtype (or one value when K_SCALAR); z: (B, 2) float32
    (complex64 viewed as float); g: (B, N, 2) float32 (complex64 viewed as float); flag: (B, NCH) int32,
    set to 1 for a chain whose carries did not converge to ``tol`` (the exact kernel then redoes it).
    GATHER: shift carries between segments with ``tl.gather`` (one-warp tiles; see :func:`_shift_prev`)."""
    j, rows, row_ok, start, seg1, seg2, pos = _tile_coords(B, NCH, CORE, R, S, L, H)
    acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N, R, S, L, K_SCALAR)
    gr, gi, bad, q2r, q2i, dqs = _solve_tile(acols, kcols, ai, seg2, tol, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                                             R, S, L, H, M1, MAXPASS, False, GATHER)
    tl.store(flag_ptr + tl.where(row_ok, rows, 0) * NCH + j, bad.to(tl.int32), mask=row_ok)
    # write G as interleaved (re, im) pairs
    store_cols(g_ptr, gr, gi, rows, row_ok, start, N, seg1, H, R, S, L, True, STORE)


@triton.jit
def _fwd_seq2_kernel(a_ptr, k_ptr, z_ptr, g_ptr, flag_ptr,
                     B, N, tol,
                     R: tl.constexpr, S: tl.constexpr, L: tl.constexpr,
                     M1: tl.constexpr, MAXPASS: tl.constexpr, K_SCALAR: tl.constexpr, STORE: tl.constexpr = 0,
                     GATHER: tl.constexpr = False):
    """G for R chains of S*L < N <= 2*S*L positions: two tiles (A = the first S*L positions, B = the rest)
    handled one after the other by the same program, with exact carries between them and no halo.

    1. A, pass 1 only: the L carry leaving A's last segment (from a guess at that segment's start, so its
       error estimate is |L| there times the segment's contraction, like a halo's).
    2. B, all passes, starting from that carry: stores G of B, and hands 1/E at B's first position (and the
       change of it in the last pass) back to A.
    3. A again (reloaded: it is in L1/L2), all passes, ending on that carry: stores G of A.
    A tile of S*L positions fits the one-warp register budget, so a 1024-chain costs 2.1 tiles of work instead
    of the three halo'd chunks of ``_fwd_fast_kernel`` (or one 1024-position tile at twice the registers).
    Arguments as in ``_fwd_fast_kernel``; flag: (B, 1) int32."""
    pid = tl.program_id(0)
    rows = pid * R + tl.arange(0, R)
    row_ok = rows < B
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    T: tl.constexpr = S * L
    pos = seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
    zero = tl.zeros([R], tl.float32)

    # 1. A: the outgoing L carry from pass 1
    acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N, R, S, L, K_SCALAR)
    p1r, p1i, pip = _fwd_partial(acols, kcols, ai, R, S, L, M1)
    lcr = _at_seg(p1r, seg2, S - 1)
    lci = _at_seg(p1i, seg2, S - 1)
    lcd = (_at_seg(tl.abs(p1r) + tl.abs(p1i), seg2, S - 2)) * _at_seg(pip, seg2, S - 1)

    # 2. B from the A carry: G of B, and the 1/E carry at its first position
    acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, T + pos, N, R, S, L, K_SCALAR)
    gr, gi, bad_b, q2r, q2i, dqs = _solve_tile(acols, kcols, ai, seg2, tol, lcr, lci, lcd, zero, zero, zero,
                                               R, S, L, 0, M1, MAXPASS, True, GATHER)
    store_cols(g_ptr, gr, gi, rows, row_ok, T, N, seg1, 0, R, S, L, True, STORE)
    ecr = _at_seg(q2r, seg2, 0)
    eci = _at_seg(q2i, seg2, 0)
    ecd = _at_seg(dqs, seg2, 0)

    # 3. A again, ending on the B carry (the barrier keeps the compiler from hoisting these loads above
    #    step 2, which would hold A's tile in registers through it: 168 instead of 128 registers)
    tl.debug_barrier()
    acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N, R, S, L, K_SCALAR)
    gr, gi, bad_a, q2r, q2i, dqs = _solve_tile(acols, kcols, ai, seg2, tol, zero, zero, zero, ecr, eci, ecd,
                                               R, S, L, 0, M1, MAXPASS, True, GATHER)
    store_cols(g_ptr, gr, gi, rows, row_ok, 0, N, seg1, 0, R, S, L, True, STORE)
    tl.store(flag_ptr + tl.where(row_ok, rows, 0), (bad_a | bad_b).to(tl.int32), mask=row_ok)


# --------------------------------------------------------------------------------------------------------
# exact path: Möbius prefix products (any z), one program per chain, loop over chunks
# --------------------------------------------------------------------------------------------------------


@triton.jit
def _cm(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br


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
def _cdiv(ar, ai, br, bi):
    t = 1.0 / (br * br + bi * bi)
    return (ar * br + ai * bi) * t, (ai * br - ar * bi) * t


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
    lr, li = _cdiv(s1r, s1i, s0r, s0i)
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
    qr, qi = _cdiv(s1r, s1i, s0r, s0i)  # phi_{e+2} / phi_{e+1} = 1 / E_{e+1}
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
def _next_flagged(flag_ptr, row, B, NFLAG, NPROG, FP2: tl.constexpr, FB: tl.constexpr, FORCE: tl.constexpr):
    """The first chain of this program's sequence (row, row + NPROG, ...) that has a flag set (every chain when
    FORCE), or a value >= B when none is left. Reads FB chains' flags (FB x NFLAG int32) per vector load, so an
    unflagged batch costs ceil(B / (NPROG * FB)) dependent loads instead of one per chain."""
    if FORCE:
        nxt = row
    else:
        fi = tl.arange(0, FP2)
        nxt = row * 0 + B
        while (row < B) & (nxt >= B):
            rws = row + tl.arange(0, FB) * NPROG
            fm = tl.load(flag_ptr + rws[:, None] * NFLAG + fi[None, :],
                         mask=(rws[:, None] < B) & (fi[None, :] < NFLAG), other=0)
            nxt = tl.min(tl.where(tl.max(fm, axis=1) != 0, rws, B), axis=0)
            row += FB * NPROG
    return nxt


@triton.jit
def _fwd_exact_kernel(a_ptr, k_ptr, z_ptr, g_ptr, flag_ptr, carry_ptr,
                      B, N, NFLAG, NPROG, MAXCH,
                      S: tl.constexpr, L: tl.constexpr, FP2: tl.constexpr, FB: tl.constexpr,
                      K_SCALAR: tl.constexpr, FORCE: tl.constexpr):
    """Exact G for every chain whose flags (NFLAG per chain) are set (all chains when FORCE).

    Persistent: program p handles chains p, p + NPROG, ... One chain = sweep 1 over its chunks (S*L
    positions each) left to right recording the state vector entering each chunk in carry_ptr
    (NPROG, MAXCH, 4) float32; sweep 2 right to left recomputes each chunk's L, runs the backward carries
    and writes G."""
    pid = tl.program_id(0)
    T = S * L
    nch = tl.cdiv(N, T)
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    cbase = pid.to(tl.int64) * MAXCH * 4
    row = _next_flagged(flag_ptr, pid, B, NFLAG, NPROG, FP2, FB, FORCE)
    while row < B:
        rows = row + tl.arange(0, 1)
        row_ok = rows < B
        v0r, v0i, v1r, v1i = _unit_state()
        c = 0
        while c < nch:
            _store_state(carry_ptr + cbase + c * 4, v0r, v0i, v1r, v1i)
            pos = c * T + seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
            acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N, 1, S, L, K_SCALAR)
            lr, li, v0r, v0i, v1r, v1i = _fwd_carries(acols, kcols, ai, seg2, v0r, v0i, v1r, v1i, S, L)
            c += 1
        u0r, u0i, u1r, u1i = _unit_state()
        c = nch - 1
        while c >= 0:
            pos = c * T + seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
            acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N, 1, S, L, K_SCALAR)
            w0r, w0i, w1r, w1i = _load_state(carry_ptr + cbase + c * 4)
            lr, li, t0r, t0i, t1r, t1i = _fwd_carries(acols, kcols, ai, seg2, w0r, w0i, w1r, w1i, S, L)
            rr, ri, u0r, u0i, u1r, u1i = _bwd_carries(acols, kcols, ai, seg2, u0r, u0i, u1r, u1i, S, L)
            lsr, lsi, o1, o2, o3 = _fwd_full(acols, kcols, ai, lr, li, L)
            gr, gi, o4, o5, o6, o7, o8 = _bwd_full(acols, kcols, ai, lsr, lsi, rr, ri, L)
            store_cols(g_ptr, gr, gi, rows, row_ok, c * T, N, seg1, 0, 1, S, L, True, 0)
            c -= 1
        row = _next_flagged(flag_ptr, row + NPROG, B, NFLAG, NPROG, FP2, FB, FORCE)


# --------------------------------------------------------------------------------------------------------
# backward: S_j = G_j^2 (F_j + R'_j - w_j), grad_a = -Re S, grad_z = conj(sum_j S_j)
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


@triton.jit
def _bwd_fast_kernel(a_ptr, k_ptr, z_ptr, g_ptr, go_ptr, o_ptr, flag_ptr,
                     B, N, NCH, CORE, tol, gtol,
                     R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr,
                     M1: tl.constexpr, MAXPASS: tl.constexpr, K_SCALAR: tl.constexpr, NEED_S: tl.constexpr,
                     LIN_EXACT: tl.constexpr, STORE: tl.constexpr = 0, GATHER: tl.constexpr = False):
    """Vector-Jacobian product of G for a tile (layout as ``_fwd_fast_kernel``).

    g: saved G (B, N, 2) float32; go: grad of G (B, N, 2) float32; o: grad_a (B, N) float32, or S (B, N, 2)
    float32 when NEED_S (grad_z needed). flag (B, NCH) int32: 1 where the carries did not converge.
    GATHER: as in ``_fwd_fast_kernel``."""
    j, rows, row_ok, start, seg1, seg2, pos = _tile_coords(B, NCH, CORE, R, S, L, H)
    acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N, R, S, L, K_SCALAR)
    gr, gi = _load_cols2(g_ptr, rows, row_ok, pos, N, 1.0, R, S, L)
    wr, wim = _load_cols2(go_ptr, rows, row_ok, pos, N, 0.0, R, S, L)
    wi = ()
    for i in tl.static_range(L):
        wi = wi + (-wim[i],)

    # forward pivots (left self-energies) by the same two-pass scheme, checked against |G|
    p1r, p1i, pip = _fwd_partial(acols, kcols, ai, R, S, L, M1)
    c1r, c1i = _shift_prev2(p1r, p1i, seg2, GATHER)
    lsr, lsi, p2r, p2i, pif = _fwd_full(acols, kcols, ai, c1r, c1i, L)
    g2f = gr[0] * gr[0] + gi[0] * gi[0]
    core = (seg2 >= H) & (seg2 < S - H)
    dfp = _shift_prev(tl.abs(p2r - p1r) + tl.abs(p2i - p1i), seg2, GATHER)
    err = tl.where(core, 4.0 * dfp * dfp * g2f, 0.0)
    ok = ((tl.max(err) <= tol * tol) & (tl.max(pif) <= 0.5)).to(tl.int32)
    if MAXPASS > 2:
        npass = 2
        while (ok == 0) & (npass < MAXPASS):
            c1r, c1i = _shift_prev2(p2r, p2i, seg2, GATHER)
            lsr, lsi, n2r, n2i, pif = _fwd_full(acols, kcols, ai, c1r, c1i, L)
            dfp = _shift_prev(tl.abs(n2r - p2r) + tl.abs(n2i - p2i), seg2, GATHER)
            p2r = n2r
            p2i = n2i
            err = tl.where(core, 4.0 * dfp * dfp * g2f, 0.0)
            ok = ((tl.max(err) <= tol * tol) & (tl.max(pif) <= 0.5)).to(tl.int32)
            npass += 1
    bad = (tl.max(err, axis=1) > tol * tol) | (tl.max(pif, axis=1) > 0.5)
    bad = bad | (tl.max(err, axis=1) != tl.max(err, axis=1))

    zero = tl.zeros([R, 1], tl.float32)
    ssr, ssi, ho_r, ho_i, to_r, to_i, cf, cb = _grad_core(acols, kcols, ai, lsr, lsi, gr, gi, wr, wi,
                                                          zero, zero, zero, zero, seg2, S, L, LIN_EXACT, GATHER)
    if LIN_EXACT == 0:
        bad = bad | (tl.max(tl.maximum(cf, cb), axis=1) > gtol)
    if LIN_EXACT == 2:  # the carry two segments back is dropped: bound the pair contractions
        pair = tl.maximum(cf * _shift_prev(cf, seg2, GATHER), cb * _shift_next(cb, seg2, S, GATHER))
        bad = bad | (tl.max(pair, axis=1) > gtol)
    if H > 0:
        lfl = tl.sum(tl.where(seg2 < H, tl.log2(tl.maximum(pif, 1e-30)), 0.0), axis=1)
        l0 = _at_seg(tl.abs(lsr[0]) + tl.abs(lsi[0]), seg2, H)
        e_l = tl.exp2(2.0 * lfl) * l0 * l0 * _at_seg(g2f, seg2, H)
        hf = tl.sum(tl.where(seg2 < H, tl.log2(tl.maximum(cf, 1e-30)), 0.0), axis=1)
        hb = tl.sum(tl.where(seg2 >= S - H, tl.log2(tl.maximum(cb, 1e-30)), 0.0), axis=1)
        bad = bad | (4.0 * e_l > tol * tol) | (e_l != e_l) | (hf > tl.log2(gtol)) | (hb > tl.log2(gtol))
    tl.store(flag_ptr + tl.where(row_ok, rows, 0) * NCH + j, bad.to(tl.int32), mask=row_ok)
    _store_s(o_ptr, ssr, ssi, rows, row_ok, start, N, seg1, H, R, S, L, NEED_S, STORE)


@triton.jit
def _exact_bwd_tile(a_ptr, k_ptr, z_ptr, g_ptr, go_ptr, rows, row_ok, start, N,
                    S: tl.constexpr, L: tl.constexpr, K_SCALAR: tl.constexpr):
    """One chunk (S*L positions from ``start``) of one chain for ``_bwd_exact_kernel``: alpha and k columns, Im
    alpha, G columns (re, im) and w = conj(grad_G) columns (re, im)."""
    pos = start + tl.arange(0, S)[None, :, None] * L + tl.arange(0, L)[None, None, :]
    acols, kcols, ai, m = _load_tile(a_ptr, k_ptr, z_ptr, rows, row_ok, pos, N, 1, S, L, K_SCALAR)
    gr, gi = _load_cols2(g_ptr, rows, row_ok, pos, N, 1.0, 1, S, L)
    wr, wim = _load_cols2(go_ptr, rows, row_ok, pos, N, 0.0, 1, S, L)
    wi = ()
    for i in tl.static_range(L):
        wi = wi + (-wim[i],)
    return acols, kcols, ai, gr, gi, wr, wi


@triton.jit
def _bwd_exact_kernel(a_ptr, k_ptr, z_ptr, g_ptr, go_ptr, o_ptr, flag_ptr, carry_ptr,
                      B, N, NFLAG, NPROG, MAXCH,
                      S: tl.constexpr, L: tl.constexpr, FP2: tl.constexpr, FB: tl.constexpr,
                      K_SCALAR: tl.constexpr, FORCE: tl.constexpr, NEED_S: tl.constexpr):
    """Exact vector-Jacobian product for every flagged chain (all when FORCE); persistent like
    ``_fwd_exact_kernel``. Sweep 1 (left to right) records, per chunk, the Möbius state and the H carry
    entering it in carry_ptr (NPROG, MAXCH, 8); sweep 2 (right to left) recomputes L and F per chunk, runs
    the T carry and writes the result."""
    pid = tl.program_id(0)
    T = S * L
    nch = tl.cdiv(N, T)
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    cbase = pid.to(tl.int64) * MAXCH * 8
    row = _next_flagged(flag_ptr, pid, B, NFLAG, NPROG, FP2, FB, FORCE)
    while row < B:
        rows = row + tl.arange(0, 1)
        row_ok = rows < B
        v0r, v0i, v1r, v1i = _unit_state()
        h_r = tl.zeros([1, 1], tl.float32)
        h_i = tl.zeros([1, 1], tl.float32)
        zero = tl.zeros([1, 1], tl.float32)
        c = 0
        while c < nch:
            _store_state(carry_ptr + cbase + c * 8, v0r, v0i, v1r, v1i)
            tl.store(carry_ptr + cbase + c * 8 + 4 + tl.arange(0, 1)[:, None], h_r)
            tl.store(carry_ptr + cbase + c * 8 + 5 + tl.arange(0, 1)[:, None], h_i)
            acols, kcols, ai, gr, gi, wr, wi = _exact_bwd_tile(a_ptr, k_ptr, z_ptr, g_ptr, go_ptr, rows, row_ok,
                                                               c * T, N, S, L, K_SCALAR)
            lr, li, v0r, v0i, v1r, v1i = _fwd_carries(acols, kcols, ai, seg2, v0r, v0i, v1r, v1i, S, L)
            lsr, lsi, o1, o2, o3 = _fwd_full(acols, kcols, ai, lr, li, L)
            ssr, ssi, hr1, hi1, tr1, ti1, cf, cb = _grad_core(acols, kcols, ai, lsr, lsi, gr, gi, wr, wi,
                                                              h_r, h_i, zero, zero, seg2, S, L, 1, False)
            h_r = hr1[:, None]
            h_i = hi1[:, None]
            c += 1
        t_r = tl.zeros([1, 1], tl.float32)
        t_i = tl.zeros([1, 1], tl.float32)
        c = nch - 1
        while c >= 0:
            acols, kcols, ai, gr, gi, wr, wi = _exact_bwd_tile(a_ptr, k_ptr, z_ptr, g_ptr, go_ptr, rows, row_ok,
                                                               c * T, N, S, L, K_SCALAR)
            w0r, w0i, w1r, w1i = _load_state(carry_ptr + cbase + c * 8)
            hcr = tl.load(carry_ptr + cbase + c * 8 + 4 + tl.arange(0, 1)[:, None])
            hci = tl.load(carry_ptr + cbase + c * 8 + 5 + tl.arange(0, 1)[:, None])
            lr, li, o0, o1, o2, o3 = _fwd_carries(acols, kcols, ai, seg2, w0r, w0i, w1r, w1i, S, L)
            lsr, lsi, o4, o5, o6 = _fwd_full(acols, kcols, ai, lr, li, L)
            ssr, ssi, hr1, hi1, tr1, ti1, cf, cb = _grad_core(acols, kcols, ai, lsr, lsi, gr, gi, wr, wi,
                                                              hcr, hci, t_r, t_i, seg2, S, L, 1, False)
            t_r = tr1[:, None]
            t_i = ti1[:, None]
            _store_s(o_ptr, ssr, ssi, rows, row_ok, c * T, N, seg1, 0, 1, S, L, NEED_S, 0)
            c -= 1
        row = _next_flagged(flag_ptr, row + NPROG, B, NFLAG, NPROG, FP2, FB, FORCE)
