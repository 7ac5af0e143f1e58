"""Log-polar (complex LNS) arithmetic and the chunked LNS pivot solver shared by ``lns`` and ``lns_triton``.

A non-zero complex number x is carried as the pair (l, p) = (log|x|, arg x), p wrapped to [-pi, pi];
zero is (-inf, 0) and infinity (+inf, 0). Multiplication and division add and subtract both parts; a sum
x + y is formed as the larger operand times 1 + w, w = y/x = r e^{i delta}, r = exp(l_y - l_x) <= 1:

    x + y = (l_x + Re g, p_x + Im g),   g = log(1 + r e^{i delta})   (the Gaussian logarithm)

Two evaluations of g:

``gauss="computed"``: with h = delta / 2, u = (1 - r) + 2 r cos^2 h >= 0 and v = 2 r sin h cos h
(= Re, Im of 1 + w, written so that neither has a cancellation), g = (log(u^2 + v^2) / 2, atan2(v, u)).
Costs one expm1, one sin/cos pair, one log and one atan2.

``gauss="table"``: a (NR x ND) table over the polar grid r0 = i / (NR - 1), delta0 = j pi / (ND - 1) on the
upper half disk (g(r, -delta) = conj g(r, delta)) stores per node f0 = g(w0), c1 = e^{i delta0} / (1 + w0)
and c2 = -e^{2 i delta0} / (2 (1 + w0)^2). A read takes the nearest node and the second-order Taylor step in
the local offset D = r e^{i eps} - r0 (eps = |delta| - delta0, e^{i eps} by its cubic polynomial):
g = f0 + D (c1 + c2 D). Truncation error <= |D|^3 / (3 |1 + w|^3) with |D| <= ~0.01 at the default size:
about 3e-7 for |1 + w| ~ 1. Near the singular point w = -1 (r > 1 - TAU and |delta| > pi - TAU) the table is
not used and g is computed. Costs one exp, a 24-byte gather and ~25 flops; no log, no atan2, no sin/cos.

Recursion form (why pivots, not determinants): the determinant recursion theta_{i+1} = alpha_i theta_i -
k_{i-1} theta_{i-1} never overflows in LNS, but log|theta_N| grows like N: at N = 2e5 and a strong
potential it is ~3e5, where a float32 log keeps only ~0.03 absolute precision, i.e. a few percent error
in G (and a float64 accumulator would be needed, doubling traffic and running at 1/64 rate on many GPUs).
We carry the LU pivots D_i = alpha_i - k_{i-1} / D_{i-1} (and E_i from the right) instead: they are ratios
of consecutive determinants, |log|D_i|| stays O(log |alpha| + log |k|) at any N, so the float32 (l, p)
accumulators keep ~1e-7 relative precision everywhere. The chunk transfer matrices (below) are normalised
after every step by subtracting their largest log-magnitude — free in LNS — so they stay bounded too.

Parallel form (chunked): the chain is cut into chunks of C sites. Pass 1 forms each chunk's 2x2 transfer
matrix P = M_e ... M_s, M_i = [[alpha_i, -k_{i-1}], [1, 0]], in LNS (2 Gaussian-log additions per site);
a carry loop over chunks applies the Möbius maps to get D at every chunk start; pass 2 re-runs the pivot
recursion inside each chunk from its carry (1 addition per site). The same from the right gives E; then
G_i = 1 / (D_i - R_i), R_i = k_i / E_{i+1} (1 more addition). Sequential depth 4 C + 2 N / C.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

PI = math.pi
TWO_PI = 2.0 * math.pi
TAU = 0.3  # half-width of the box around w = -1 where the table variant computes g instead
DEFAULT_TABLE_SHAPE = (65, 257)
GAUSS_MODES = ("computed", "table")

Lns = tuple[torch.Tensor, torch.Tensor]  # (log|x|, arg x)

_TABLES: OrderedDict[tuple, torch.Tensor] = OrderedDict()
TABLE_CACHE_ENTRIES = 8


def wrap(p: torch.Tensor) -> torch.Tensor:
    """Phase wrapped to [-pi, pi]."""
    return p - TWO_PI * torch.round(p * (1.0 / TWO_PI))


def to_lns(x: torch.Tensor) -> Lns:
    """Complex (or real) tensor -> (log|x|, arg x) in the matching real dtype; 0 -> (-inf, 0)."""
    if x.is_complex():
        return torch.log(torch.abs(x)), torch.angle(x)
    # real: arg is 0 or pi, built in x's dtype (a Python-scalar torch.where would round pi to float32)
    return torch.log(torch.abs(x)), (x < 0).to(x.dtype) * torch.tensor(PI, dtype=x.dtype, device=x.device)


def from_lns(l: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(log|x|, arg x) -> complex tensor."""
    mag = torch.exp(l)
    return torch.complex(mag * torch.cos(p), mag * torch.sin(p))


def mul(x: Lns, y: Lns) -> Lns:
    return x[0] + y[0], wrap(x[1] + y[1])


def div(x: Lns, y: Lns) -> Lns:
    return x[0] - y[0], wrap(x[1] - y[1])


def recip(x: Lns) -> Lns:
    return -x[0], -x[1]


def neg(x: Lns) -> Lns:
    return x[0], wrap(x[1] + PI)


def gauss_computed(d: torch.Tensor, delta: torch.Tensor) -> Lns:
    """g = log(1 + e^d e^{i delta}) for d <= 0 (d = -inf allowed): (Re g, Im g).

    cos(delta / 2) is evaluated as sin((PI - |delta|) / 2) with the same rounded PI that carries the phase of a
    negative number: x + (-x) (d = 0, |delta| = PI) is then exactly 0 (log -inf), as in any exact arithmetic,
    not |1 + e^{i PI}| ~ 1e-7 (float32), which made a singular matrix (a = [1, 1], b = c = 1, z = 0) come out
    finite (|G| ~ 1e7) instead of non-finite."""
    em1 = torch.expm1(d)  # r - 1, accurate near r = 1
    r = em1 + 1.0
    h = 0.5 * delta
    c = torch.sin(0.5 * (PI - delta.abs()))  # = cos(h), exactly 0 at |delta| = PI
    s = torch.sin(h)
    u = -em1 + 2.0 * r * c * c
    v = 2.0 * r * s * c
    return 0.5 * torch.log(u * u + v * v), torch.atan2(v, u)


def build_gauss_table(shape: tuple[int, int], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The Taylor table (NR, ND, 6) [Re f0, Im f0, Re c1, Im c1, Re c2, Im c2], built in float64 (cached)."""
    nr, nd = shape
    key = (nr, nd, dtype, str(device))
    hit = _TABLES.get(key)
    if hit is not None:
        _TABLES.move_to_end(key)
        return hit
    r0 = torch.linspace(0.0, 1.0, nr, dtype=torch.float64)[:, None]
    d0 = torch.linspace(0.0, PI, nd, dtype=torch.float64)[None, :]
    rot = torch.polar(torch.ones_like(d0), d0)
    w0 = r0 * rot
    one = 1.0 + w0
    singular = one.abs() < 1e-12  # the node w0 = -1 lies in the computed box; keep its entries finite
    one = torch.where(singular, torch.ones_like(one), one)
    f0 = torch.where(singular, torch.zeros_like(one), torch.log(one))
    c1 = torch.where(singular, torch.zeros_like(one), rot / one)
    c2 = torch.where(singular, torch.zeros_like(one), -(rot * rot) / (2.0 * one * one))
    tab = torch.stack([f0.real, f0.imag, c1.real, c1.imag, c2.real, c2.imag], dim=-1)
    tab = tab.to(dtype).to(device).contiguous()
    _TABLES[key] = tab
    while len(_TABLES) > TABLE_CACHE_ENTRIES:
        _TABLES.popitem(last=False)
    return tab


def gauss_table(d: torch.Tensor, delta: torch.Tensor, tab: torch.Tensor) -> Lns:
    """g = log(1 + e^d e^{i delta}) read from the Taylor table (computed inside the box around w = -1)."""
    nr, nd = tab.shape[0], tab.shape[1]
    r = torch.exp(d)
    ad = delta.abs()
    i = torch.round(r * (nr - 1)).to(torch.long)
    j = torch.round(ad * ((nd - 1) / PI)).to(torch.long).clamp_(0, nd - 1)
    eps = ad - j.to(d.dtype) * (PI / (nd - 1))
    e2 = eps * eps
    dr = r * (1.0 - 0.5 * e2) - i.to(d.dtype) * (1.0 / (nr - 1))
    di = r * eps * (1.0 - e2 * (1.0 / 6.0))
    node = tab.reshape(-1, 6)[(i * nd + j).reshape(-1)].reshape(*d.shape, 6)
    f0r, f0i, c1r, c1i, c2r, c2i = node.unbind(-1)
    # c1 + c2 * D
    tr = c1r + c2r * dr - c2i * di
    ti = c1i + c2r * di + c2i * dr
    gr = f0r + dr * tr - di * ti
    gi = f0i + dr * ti + di * tr
    gi = torch.where(delta < 0, -gi, gi)
    box = (r > 1.0 - TAU) & (ad > PI - TAU)
    if bool(box.any()):
        cr, ci = gauss_computed(d, delta)
        gr = torch.where(box, cr, gr)
        gi = torch.where(box, ci, gi)
    return gr, gi


class Adder:
    """x + y in LNS with the chosen Gaussian-log evaluation."""

    def __init__(self, gauss: str, dtype: torch.dtype, device: torch.device | str,
                 table_shape: tuple[int, int] = DEFAULT_TABLE_SHAPE) -> None:
        if gauss not in GAUSS_MODES:
            raise ValueError(f"gauss: must be one of {GAUSS_MODES}, got {gauss!r}")
        self.gauss = gauss
        self.tab = build_gauss_table(table_shape, dtype, device) if gauss == "table" else None

    def __call__(self, x: Lns, y: Lns) -> Lns:
        lx, px = x
        ly, py = y
        big = lx >= ly
        lmax = torch.where(big, lx, ly)
        lmin = torch.where(big, ly, lx)
        pmax = torch.where(big, px, py)
        pmin = torch.where(big, py, px)
        d = torch.where(lmax == -math.inf, -math.inf, lmin - lmax)  # 0 + 0: g = log 1 = 0, result stays 0
        delta = wrap(pmin - pmax)
        if self.tab is None:
            gr, gi = gauss_computed(d, delta)
        else:
            gr, gi = gauss_table(d, delta, self.tab)
        return lmax + gr, wrap(pmax + gi)


def _select(mask: torch.Tensor, new: Lns, old: Lns) -> Lns:
    return torch.where(mask, new[0], old[0]), torch.where(mask, new[1], old[1])


def _mat_step(add: Adder, mat: tuple[Lns, Lns, Lns, Lns], al: Lns, nk: Lns) -> tuple[Lns, Lns, Lns, Lns]:
    """P <- M P with M = [[alpha, -k], [1, 0]] (nk = -k), then normalised by its largest log-magnitude."""
    p00, p01, p10, p11 = mat
    n00 = add(mul(al, p00), mul(nk, p10))
    n01 = add(mul(al, p01), mul(nk, p11))
    s = torch.maximum(torch.maximum(n00[0], n01[0]), torch.maximum(p00[0], p01[0]))
    s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
    return (n00[0] - s, n00[1]), (n01[0] - s, n01[1]), (p00[0] - s, p00[1]), (p01[0] - s, p01[1])


def chunk_size_for(n: int) -> int:
    """Default chunk length: about sqrt(N) (balances the 4 C in-chunk steps and the 2 N / C carry steps)."""
    return max(1, int(math.ceil(math.sqrt(n))))


def lns_green_torch(
    alpha: torch.Tensor, k: torch.Tensor, uniform: bool, gauss: str, chunk: int | None,
    table_shape: tuple[int, int] = DEFAULT_TABLE_SHAPE,
) -> torch.Tensor:
    """G (B, N) complex from alpha (B, N) complex and k (B, N-1) (stride-0 when ``uniform``), all in LNS.

    Real work dtype = the real dtype of alpha (float32 for complex64): the (log, arg) accumulators have
    that width. See the module docstring for the recursion and the chunking.
    """
    bsz, n = alpha.shape
    rdt = alpha.real.dtype
    dev = alpha.device
    add = Adder(gauss, rdt, dev, table_shape)
    c = chunk or chunk_size_for(n)
    nc = -(-n // c)
    npad = nc * c
    la, pa = to_lns(alpha)
    pad = npad - n

    def padded(x: torch.Tensor, fill: float) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, pad), value=fill).reshape(bsz, nc, c) if pad else x.reshape(bsz, nc, c)

    la3, pa3 = padded(la, 0.0), padded(pa, 0.0)
    # -k on the sites: kl[i] = -k_{i-1} (left bond, 0 at i = 0), kr[i] = -k_i (right bond, 0 at i = N-1)
    ninf = -math.inf
    if n > 1:
        kk = k[:, :1].expand(bsz, n - 1) if uniform else k
        lk, pk = to_lns(kk.to(alpha.dtype) if kk.is_complex() else kk.to(rdt))
        pk = wrap(pk + PI)
        left_l = torch.cat([torch.full_like(lk[:, :1], ninf), lk], dim=1)
        left_p = torch.cat([torch.zeros_like(pk[:, :1]), pk], dim=1)
        right_l = torch.cat([lk, torch.full_like(lk[:, :1], ninf)], dim=1)
        right_p = torch.cat([pk, torch.zeros_like(pk[:, :1])], dim=1)
    else:
        left_l = right_l = torch.full_like(la, ninf)
        left_p = right_p = torch.zeros_like(pa)
    kl3 = (padded(left_l, ninf), padded(left_p, 0.0))
    kr3 = (padded(right_l, ninf), padded(right_p, 0.0))
    pos = torch.arange(npad, device=dev).reshape(1, nc, c).expand(bsz, nc, c)
    valid = pos < n

    zero = (torch.full((bsz, nc), ninf, dtype=rdt, device=dev), torch.zeros((bsz, nc), dtype=rdt, device=dev))
    one = (torch.zeros((bsz, nc), dtype=rdt, device=dev), torch.zeros((bsz, nc), dtype=rdt, device=dev))

    def transfer(order: range, kb: tuple[torch.Tensor, torch.Tensor]) -> tuple[Lns, Lns, Lns, Lns]:
        mat = (one, zero, zero, one)
        for t in order:
            m = valid[:, :, t]
            new = _mat_step(add, mat, (la3[:, :, t], pa3[:, :, t]), (kb[0][:, :, t], kb[1][:, :, t]))
            mat = tuple(_select(m, nw, od) for nw, od in zip(new, mat))  # type: ignore[assignment]
        return mat

    def carries(mat: tuple[Lns, Lns, Lns, Lns], chunks: range) -> Lns:
        """Incoming pivot (LNS) of each chunk, visiting ``chunks`` in order; the first gets infinity."""
        p00, p01, p10, p11 = mat
        hp = (torch.zeros(bsz, dtype=rdt, device=dev), torch.zeros(bsz, dtype=rdt, device=dev))
        hq = (torch.full((bsz,), ninf, dtype=rdt, device=dev), torch.zeros(bsz, dtype=rdt, device=dev))
        out_l = torch.empty((bsz, nc), dtype=rdt, device=dev)
        out_p = torch.empty((bsz, nc), dtype=rdt, device=dev)
        for ci in chunks:
            out_l[:, ci], out_p[:, ci] = div(hp, hq)
            np_ = add(mul((p00[0][:, ci], p00[1][:, ci]), hp), mul((p01[0][:, ci], p01[1][:, ci]), hq))
            nq = add(mul((p10[0][:, ci], p10[1][:, ci]), hp), mul((p11[0][:, ci], p11[1][:, ci]), hq))
            s = torch.maximum(np_[0], nq[0])
            s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
            hp, hq = (np_[0] - s, np_[1]), (nq[0] - s, nq[1])
        return out_l, out_p

    # forward: chunk transfer matrices, carries, then pivots D inside each chunk
    din = carries(transfer(range(c), kl3), range(nc))
    dl = torch.empty((bsz, nc, c), dtype=rdt, device=dev)
    dp = torch.empty((bsz, nc, c), dtype=rdt, device=dev)
    cur = din
    for t in range(c):
        al = (la3[:, :, t], pa3[:, :, t])
        cur = add(al, mul((kl3[0][:, :, t], kl3[1][:, :, t]), recip(cur)))  # D_i = alpha_i - k_{i-1}/D_{i-1}
        dl[:, :, t], dp[:, :, t] = cur
    # backward: E from the right, then G_i = 1 / (D_i - R_i), R_i = k_i / E_{i+1}
    ein = carries(transfer(range(c - 1, -1, -1), kr3), range(nc - 1, -1, -1))
    gl = torch.empty((bsz, nc, c), dtype=rdt, device=dev)
    gp = torch.empty((bsz, nc, c), dtype=rdt, device=dev)
    cur = ein
    for t in range(c - 1, -1, -1):
        al = (la3[:, :, t], pa3[:, :, t])
        m = valid[:, :, t]
        nr = mul((kr3[0][:, :, t], kr3[1][:, :, t]), recip(cur))  # -R_i = -k_i / E_{i+1}
        den = add((dl[:, :, t], dp[:, :, t]), nr)  # D_i - R_i
        gl[:, :, t], gp[:, :, t] = recip(den)
        cur = _select(m, add(al, nr), cur)  # E_i = alpha_i - R_i (padding keeps the incoming carry)
    g = from_lns(gl.reshape(bsz, npad)[:, :n], gp.reshape(bsz, npad)[:, :n])
    return g
