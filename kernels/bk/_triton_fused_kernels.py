"""The fast ``triton_fused`` kernels: forward (one tile, or two tiles in sequence) and backward, each with the
exact path folded in for the chains it flags (docs/triton_fused.md).

Carries between segments (the fast path). The pivot recursions forget their start: an error dL in L at a segment
start reaches the end multiplied by prod_i k_i / (D_i D_i'), so a recursion started from a guess converges to the
true trajectory. Pass 1 runs the last ``M1`` positions of every segment from the guess L = 0 and hands its end
value to the next segment (a gather along the segment axis); pass 2 runs every segment in full from that carry.
The change of each carry between the two passes (dL) bounds the remaining error when the recursions contract
(prod |k/D^2| <= 1/2 over a segment): the error of G at the first position of the next segment is <= 2 |dL| |G|.
If the bound exceeds ``tol`` the program runs more full passes (each uses the previous pass's carries) up to
``MAXPASS`` and otherwise raises a per-chain flag. The same holds backwards for R. Chains longer than one tile are
split into chunks with ``H`` halo segments on each side; the halo start is a guess, and its error estimate is the
product of the per-segment contractions over the halo.

Flagged chains are recomputed by the exact path (``_triton_fused_exact``) in the same launch: a one-chunk tile
redoes its own flagged rows, a chain split over several programs is redone by the program that finishes it last.

Backward (``_bwd_fast_kernel``): S_j = G_j^2 (F_j + R'_j - w_j) with w = conj(grad_G) and the two linear
recurrences F_j = w_j + h_{j-1} F_{j-1} (h_j = k_j / D_j^2) and R'_j = w_j + k_j e_{j+1} R'_{j+1}
(e_j = 1 / E_j^2). D comes from the same fast forward passes, E from the saved G (E = 1/G + L).
"""

from __future__ import annotations

from bkbench.kernels.bk._triton_fused_exact import exact_bwd_chain, exact_fwd_chain
from bkbench.kernels.bk._triton_fused_passes import (
    _bwd_full,
    _bwd_partial,
    _form_tile,
    _fwd_full,
    _fwd_partial,
    _grad_core,
    _load_cols2,
    _load_raw,
    _load_tile,
    _store_s,
    _tile_at,
    _tile_coords,
)
from bkbench.kernels.bk._triton_fused_regs import (
    _at_seg,
    _shift_next,
    _shift_next2,
    _shift_prev,
    _shift_prev2,
    store_cols,
    tl,
    triton,
)


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
def _fwd_fast_kernel(a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim,
                     g_ptr, flag_ptr, cnt_ptr, carry_ptr, B, N, NCH, CORE, MAXCH, tol,
                     R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr,
                     M1: tl.constexpr, MAXPASS: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr,
                     STORE: tl.constexpr = 0, GATHER: tl.constexpr = False, FOLD: tl.constexpr = True,
                     FP2: tl.constexpr = 1, XL: tl.constexpr = 8):
    """G for a tile of R chains x one chunk (CORE positions, plus H halo segments each side).

    Operands as ``_load_tile`` (a (B, N) float32/bf16/fp16, k from b, c or values, z); g: (B, N, 2) float32
    (complex64 viewed as float); flag: (B, NCH) int32, set to 1 for a chain whose carries did not converge to
    ``tol``. FOLD: flagged chains are recomputed exactly in this launch (:func:`_fold_exact_fwd`; cnt (B,) int32,
    zero on entry and on exit; carry (B, MAXCH, 4) float32 scratch, MAXCH = ceil(N / (S * XL)); FP2: NCH
    rounded up to a power of two).
    GATHER: shift carries between segments with ``tl.gather`` (one-warp tiles; see :func:`_shift_prev`)."""
    ops = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim)
    j, rows, row_ok, start, seg1, seg2, pos = _tile_coords(B, NCH, CORE, R, S, L, H)
    acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, R, S, L, KM, ZM)
    gr, gi, bad, q2r, q2i, dqs = _solve_tile(acols, kcols, ai, seg2, tol, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                                             R, S, L, H, M1, MAXPASS, False, GATHER)
    tl.store(flag_ptr + tl.where(row_ok, rows, 0) * NCH + j, bad.to(tl.int32), mask=row_ok)
    # write G as interleaved (re, im) pairs
    store_cols(g_ptr, gr, gi, rows, row_ok, start, N, seg1, H, R, S, L, True, STORE)
    if FOLD:
        _fold_exact_fwd(ops, g_ptr, flag_ptr, cnt_ptr, carry_ptr, rows, row_ok, bad, N, NCH, MAXCH,
                        R, S, XL, KM, ZM, FP2, H == 0)


@triton.jit
def _fwd_persist_kernel(a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim,
                        g_ptr, flag_ptr, cnt_ptr, carry_ptr, B, N, NCH, CORE, MAXCH, tol, NTILE,
                        R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr,
                        M1: tl.constexpr, MAXPASS: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr,
                        STORE: tl.constexpr = 0, GATHER: tl.constexpr = False, FOLD: tl.constexpr = True,
                        FP2: tl.constexpr = 1, XL: tl.constexpr = 8):
    """``_fwd_fast_kernel`` on a persistent grid: program p does tiles p, p + P, p + 2P, ... of the NTILE tiles
    (P programs) and issues the global loads of its next tile before it solves the current one, so the loads run
    while the division chains do (the H200 kernel is latency-bound: docs/triton_fused.md). Arguments as
    ``_fwd_fast_kernel`` plus NTILE = ceil(B / R) * NCH. (A while loop: the interpreter cannot run a ``range`` with
    runtime bounds.)"""
    ops = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim)
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    _j, rows, row_ok, _st, _s1, _s2, pos = _tile_at(pid, B, NCH, CORE, R, S, L, H)
    a, bt, ct, zr, zi = _load_raw(ops, rows, row_ok, pos, N, R, S, L, KM, ZM)  # the first tile's loads
    t = pid
    while t < NTILE:
        j, rows, row_ok, start, seg1, seg2, pos = _tile_at(t, B, NCH, CORE, R, S, L, H)
        acols, kcols, ai, m = _form_tile(ops, a, bt, ct, zr, zi, row_ok, pos, N, R, S, L, KM)
        # the next tile's loads (rows past B when there is none: masked out)
        _j, nrows, nrow_ok, _s, _s1, _s2, npos = _tile_at(t + nprog, B, NCH, CORE, R, S, L, H)
        a, bt, ct, zr, zi = _load_raw(ops, nrows, nrow_ok, npos, N, R, S, L, KM, ZM)
        gr, gi, bad, q2r, q2i, dqs = _solve_tile(acols, kcols, ai, seg2, tol, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                                                 R, S, L, H, M1, MAXPASS, False, GATHER)
        tl.store(flag_ptr + tl.where(row_ok, rows, 0) * NCH + j, bad.to(tl.int32), mask=row_ok)
        store_cols(g_ptr, gr, gi, rows, row_ok, start, N, seg1, H, R, S, L, True, STORE)
        t += nprog
    if FOLD:
        # the exact path after every tile of this program is stored (inside the loop the prefetched tile would stay
        # live across it: offline ptxas, sm_90, scalar coupling: 246 registers instead of 168); each tile's
        # verdict comes back from the flags this program wrote
        tl.debug_barrier()
        t = pid
        while t < NTILE:
            j, rows, row_ok, start, seg1, seg2, pos = _tile_at(t, B, NCH, CORE, R, S, L, H)
            bad = tl.load(flag_ptr + tl.where(row_ok, rows, 0) * NCH + j, mask=row_ok, other=0) != 0
            _fold_exact_fwd(ops, g_ptr, flag_ptr, cnt_ptr, carry_ptr, rows, row_ok, bad, N, NCH, MAXCH,
                            R, S, XL, KM, ZM, FP2, H == 0)
            t += nprog


@triton.jit
def _fwd_seq2_kernel(a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim,
                     g_ptr, flag_ptr, cnt_ptr, carry_ptr, B, N, MAXCH, tol,
                     R: tl.constexpr, S: tl.constexpr, L: tl.constexpr,
                     M1: tl.constexpr, MAXPASS: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr,
                     STORE: tl.constexpr = 0, GATHER: tl.constexpr = False, FOLD: tl.constexpr = True,
                     XL: tl.constexpr = 8):
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
    ops = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim)
    pid = tl.program_id(0)
    rows = pid * R + tl.arange(0, R)
    row_ok = rows < B
    seg1 = tl.arange(0, S)
    seg2 = seg1[None, :]
    T: tl.constexpr = S * L
    pos = seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
    zero = tl.zeros([R], tl.float32)

    # 1. A: the outgoing L carry from pass 1
    acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, R, S, L, KM, ZM)
    p1r, p1i, pip = _fwd_partial(acols, kcols, ai, R, S, L, M1)
    lcr = _at_seg(p1r, seg2, S - 1)
    lci = _at_seg(p1i, seg2, S - 1)
    lcd = (_at_seg(tl.abs(p1r) + tl.abs(p1i), seg2, S - 2)) * _at_seg(pip, seg2, S - 1)

    # 2. B from the A carry: G of B, and the 1/E carry at its first position
    acols, kcols, ai, m = _load_tile(ops, rows, row_ok, T + pos, N, R, S, L, KM, ZM)
    gr, gi, bad_b, q2r, q2i, dqs = _solve_tile(acols, kcols, ai, seg2, tol, lcr, lci, lcd, zero, zero, zero,
                                               R, S, L, 0, M1, MAXPASS, True, GATHER)
    store_cols(g_ptr, gr, gi, rows, row_ok, T, N, seg1, 0, R, S, L, True, STORE)
    ecr = _at_seg(q2r, seg2, 0)
    eci = _at_seg(q2i, seg2, 0)
    ecd = _at_seg(dqs, seg2, 0)

    # 3. A again, ending on the B carry (the barrier keeps the compiler from hoisting these loads above
    #    step 2, which would hold A's tile in registers through it: 168 instead of 128 registers)
    tl.debug_barrier()
    acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, R, S, L, KM, ZM)
    gr, gi, bad_a, q2r, q2i, dqs = _solve_tile(acols, kcols, ai, seg2, tol, zero, zero, zero, ecr, eci, ecd,
                                               R, S, L, 0, M1, MAXPASS, True, GATHER)
    store_cols(g_ptr, gr, gi, rows, row_ok, 0, N, seg1, 0, R, S, L, True, STORE)
    bad = bad_a | bad_b
    tl.store(flag_ptr + tl.where(row_ok, rows, 0), bad.to(tl.int32), mask=row_ok)
    if FOLD:
        _fold_exact_fwd(ops, g_ptr, flag_ptr, cnt_ptr, carry_ptr, rows, row_ok, bad, N, 1, MAXCH,
                        R, S, XL, KM, ZM, 1, True)


# --------------------------------------------------------------------------------------------------------
# the fold: flagged chains recomputed exactly inside the fast launch (no second launch)
# --------------------------------------------------------------------------------------------------------


@triton.jit
def _chain_needs_exact(cnt_ptr, flag_ptr, row, NCH, FP2: tl.constexpr):
    """For a chain split into NCH chunk programs: True in the program that finishes the chain last, when one of its
    chunks was flagged. Each program counts itself in cnt[row] after its stores (the barrier orders the other
    threads' stores before the release); the last one (acquire) resets the count to 0 and reads the chain's flags
    past L1. (Measured on the H200, 4096 x 4096: the fold costs the fast kernel 10 %, 101.6 against 92.0 us without
    it; letting only the chain's last chunk wait, while the others count without waiting, measured the same:
    103.5 us. docs/triton_fused.md.)"""
    tl.debug_barrier()
    old = tl.atomic_add(cnt_ptr + row, 1, sem="acq_rel")
    last = old == NCH - 1
    fi = tl.arange(0, FP2)
    fl = tl.load(flag_ptr + row.to(tl.int64) * NCH + fi, mask=(fi < NCH) & last, other=0, cache_modifier=".cg")
    if last:
        tl.store(cnt_ptr + row, 0)
    return last & (tl.max(fl, axis=0) != 0)


@triton.jit
def _fold_exact_fwd(ops, g_ptr, flag_ptr, cnt_ptr, carry_ptr, rows, row_ok, bad, N, NCH, MAXCH,
                    R: tl.constexpr, S: tl.constexpr, XL: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr,
                    FP2: tl.constexpr, ONE_CHUNK: tl.constexpr):
    """Exact G (``exact_fwd_chain`` on chunks of S x XL positions) for the flagged chains of this tile: a one-chunk
    tile redoes its own flagged rows; a chain split over NCH programs is redone by the one that finishes it last
    (:func:`_chain_needs_exact`). XL (the exact path's segment length) is shorter than the fast path's L so that the
    exact path, rarely run, does not raise the kernel's register count (which sets the warps per SM): at L 16 it
    took the one-warp forward from 127 to 156 registers, at XL 8 it stays at 123 (offline ptxas, sm_90)."""
    if ONE_CHUNK:
        flagged = bad & row_ok
        if tl.max(flagged.to(tl.int32), axis=0) != 0:
            tl.debug_barrier()  # the fast path's stores of this tile before the exact ones
            r = 0
            while r < R:
                if tl.sum(tl.where(tl.arange(0, R) == r, flagged.to(tl.int32), 0), axis=0) != 0:
                    exact_fwd_chain(ops, g_ptr, carry_ptr, tl.sum(tl.where(tl.arange(0, R) == r, rows, 0), axis=0),
                                    N, MAXCH, S, XL, KM, ZM)
                r += 1
    else:
        row = tl.sum(rows, axis=0)  # R == 1
        if _chain_needs_exact(cnt_ptr, flag_ptr, row, NCH, FP2):
            exact_fwd_chain(ops, g_ptr, carry_ptr, row, N, MAXCH, S, XL, KM, ZM)


@triton.jit
def _fold_exact_bwd(ops, g_ptr, go_ptr, o_ptr, flag_ptr, cnt_ptr, carry_ptr, rows, row_ok, bad, N, NCH, MAXCH,
                    R: tl.constexpr, S: tl.constexpr, XL: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr,
                    FP2: tl.constexpr, ONE_CHUNK: tl.constexpr, NEED_S: tl.constexpr):
    """The backward's fold, as :func:`_fold_exact_fwd` (carry: (B, MAXCH, 8) float32)."""
    if ONE_CHUNK:
        flagged = bad & row_ok
        if tl.max(flagged.to(tl.int32), axis=0) != 0:
            tl.debug_barrier()
            r = 0
            while r < R:
                if tl.sum(tl.where(tl.arange(0, R) == r, flagged.to(tl.int32), 0), axis=0) != 0:
                    exact_bwd_chain(ops, g_ptr, go_ptr, o_ptr, carry_ptr,
                                    tl.sum(tl.where(tl.arange(0, R) == r, rows, 0), axis=0), N, MAXCH,
                                    S, XL, KM, ZM, NEED_S)
                r += 1
    else:
        row = tl.sum(rows, axis=0)
        if _chain_needs_exact(cnt_ptr, flag_ptr, row, NCH, FP2):
            exact_bwd_chain(ops, g_ptr, go_ptr, o_ptr, carry_ptr, row, N, MAXCH, S, XL, KM, ZM, NEED_S)


@triton.jit
def _bwd_fast_kernel(a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim,
                     g_ptr, go_ptr, o_ptr, flag_ptr, cnt_ptr, carry_ptr, B, N, NCH, CORE, MAXCH, tol, gtol,
                     R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, H: tl.constexpr,
                     M1: tl.constexpr, MAXPASS: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr,
                     NEED_S: tl.constexpr, LIN_EXACT: tl.constexpr, STORE: tl.constexpr = 0,
                     GATHER: tl.constexpr = False, FOLD: tl.constexpr = True, FP2: tl.constexpr = 1,
                     XL: tl.constexpr = 8):
    """Vector-Jacobian product of G for a tile (layout as ``_fwd_fast_kernel``).

    g: saved G (B, N, 2) float32; go: grad of G (B, N, 2) float32; o: grad_a (B, N) float32, or S (B, N, 2)
    float32 when NEED_S (grad_z needed). flag (B, NCH) int32: 1 where the carries did not converge.
    GATHER, FOLD, cnt, carry (B, MAXCH, 8), FP2: as in ``_fwd_fast_kernel``."""
    ops = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim)
    j, rows, row_ok, start, seg1, seg2, pos = _tile_coords(B, NCH, CORE, R, S, L, H)
    acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, R, S, L, KM, ZM)
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
    if FOLD:
        _fold_exact_bwd(ops, g_ptr, go_ptr, o_ptr, flag_ptr, cnt_ptr, carry_ptr, rows, row_ok, bad, N, NCH, MAXCH,
                        R, S, XL, KM, ZM, FP2, H == 0, NEED_S)
