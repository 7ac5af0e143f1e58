"""Register-level helpers of the ``triton_fused`` kernels: reciprocal, column split/join of tiles, column stores,
segment shifts, complex products (docs/triton_fused.md has the algorithm; the kernels are in
``_triton_fused_kernels.py``).

A tile [R, S, L] (chain rows x segments x positions) is split into L register columns of shape [R, S], so thread t
runs the pivot recursion of its own segment(s) while all segments advance together. Complex values are (re, im)
pairs of float32 tensors.
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




@triton.jit
def _cm(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br




@triton.jit
def _cdiv(ar, ai, br, bi):
    t = 1.0 / (br * br + bi * bi)
    return (ar * br + ai * bi) * t, (ai * br - ar * bi) * t
