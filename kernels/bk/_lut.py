"""Shared pieces of the texture-style LUT Green's function (``lut_green``, ``lut_green_triton``).

Notation (docs/bk-core-math): alpha_i = a_i - z, k_i = b_i c_i. Left self-energies
L_0 = 0, L_i = k_{i-1} / (alpha_{i-1} - L_{i-1}); right self-energies R_{N-1} = 0,
R_i = k_i / (alpha_{i+1} - R_{i+1}); G_i = 1 / (alpha_i - L_i - R_i) (exact).

Bulk closure. For an infinite homogeneous chain (constant alpha, k) the self-energy is the decaying fixed
point of x = k / (alpha - x):

    Sigma(alpha; k) = 2k / (alpha + s),  s = sqrt(alpha^2 - 4k) with the sign that makes Re(conj(alpha) s) >= 0,

i.e. the root of x^2 - alpha x + k = 0 of smaller modulus (the two roots multiply to k), written without
cancellation. With z and k fixed, Sigma depends on the one real number a, so it is tabulated once over
[lo, hi] with ``size`` points (the 1-D "texture") and read with linear interpolation.

Windowed fraction (window m >= 0): L_i is evaluated exactly from the m bonds to its left, closing the
tail with L_{i-m} ~ Sigma(alpha_{i-m-1}; k_{i-m-1}) (the bulk self-energy of the site just outside the
window with the local bond); when i - m - 1 < 0 the fraction reaches the chain end and terminates exactly
(L_0 = 0). Right side mirrored. m = 0 is the pure table: G_i = 1 / (alpha_i - Sigma(alpha_{i-1}) -
Sigma(alpha_{i+1})) in the interior.

Where the closure value comes from (``closure_source``):
    "table"     uniform k per chain (stride-0 k, or every row of k constant), real a, and a table per
                distinct (z_b, k_b) pair (at most ``max_tables``): interpolated table reads;
    "analytic"  otherwise (position-dependent k, complex a, more distinct (z, k) pairs than ``max_tables``),
                or when ``tail="analytic"``: Sigma evaluated by the closed form above per element, with the
                local alpha and the local k of the closing bond.
Inside the window, position-dependent k and complex a are always used exactly.

Out-of-range a (outside [lo, hi]) never gets a clamped table value. ``out_of_range`` says what happens:
"analytic" (default) evaluates the closed form for those elements only; "extend" rebuilds the table over a
range covering the data (the span grown to the next power-of-two multiple, so nearby data hits the cache);
"raise" raises ValueError naming ``table_range``.

Table cache: tables are keyed by (tuple of distinct (z, k) pairs, lo, hi, size, dtype, device) in a
module-level LRU of ``CACHE_ENTRIES`` keys (oldest evicted first); :func:`clear_table_cache` empties it.
A hit costs the device-to-host copy of the distinct (z, k) values used to build the key (one sync).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

CACHE_ENTRIES = 32
DEFAULT_RANGE = (-8.0, 8.0)
DEFAULT_SIZE = 4096
DEFAULT_MAX_TABLES = 256
OUT_OF_RANGE_MODES = ("analytic", "extend", "raise")
TAIL_MODES = ("table", "analytic")

_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def clear_table_cache() -> None:
    """Drop every cached bulk self-energy table."""
    _CACHE.clear()


def cache_size() -> int:
    """Number of tables currently cached."""
    return len(_CACHE)


def complex_dtype_of(a: torch.Tensor) -> torch.dtype:
    """complex128 for float64/complex128 work, complex64 otherwise."""
    return torch.complex128 if a.dtype in (torch.float64, torch.complex128) else torch.complex64


def bulk_sigma(alpha: torch.Tensor, k: torch.Tensor | complex) -> torch.Tensor:
    """Decaying bulk self-energy Sigma(alpha; k) = 2k / (alpha + s), elementwise, complex in -> complex out."""
    alpha = alpha if alpha.is_complex() else alpha.to(torch.complex128)
    k_t = torch.as_tensor(k, dtype=alpha.dtype, device=alpha.device)
    s = torch.sqrt(alpha * alpha - 4.0 * k_t)
    flip = (alpha.real * s.real + alpha.imag * s.imag) < 0
    s = torch.where(flip, -s, s)
    den = alpha + s
    # alpha + s == 0 only when alpha == 0 and k == 0 (isolated site at a = z): no coupling, no self-energy.
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where(den == 0, torch.zeros_like(den), 2.0 * k_t / safe)


@dataclass(frozen=True)
class TableSpec:
    """Range and size of the bulk self-energy table."""

    lo: float
    hi: float
    size: int

    @property
    def step(self) -> float:
        return (self.hi - self.lo) / (self.size - 1)


def check_options(
    window: int, table_range: tuple[float, float], table_size: int, out_of_range: str, tail: str, max_tables: int
) -> TableSpec:
    """Validate the ``lut_green`` options; ValueError naming the option and the fix."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window: must be an integer >= 0 (m = 0 is the pure table), got {window!r}")
    try:
        lo, hi = (float(x) for x in table_range)
    except (TypeError, ValueError):
        raise ValueError(f"table_range: must be a pair (lo, hi) of numbers, got {table_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"table_range: need finite lo < hi, got {table_range!r}")
    if isinstance(table_size, bool) or not isinstance(table_size, int) or table_size < 2:
        raise ValueError(f"table_size: must be an integer >= 2, got {table_size!r}")
    if out_of_range not in OUT_OF_RANGE_MODES:
        raise ValueError(f"out_of_range: must be one of {OUT_OF_RANGE_MODES}, got {out_of_range!r}")
    if tail not in TAIL_MODES:
        raise ValueError(f"tail: must be one of {TAIL_MODES}, got {tail!r}")
    if isinstance(max_tables, bool) or not isinstance(max_tables, int) or max_tables < 1:
        raise ValueError(f"max_tables: must be an integer >= 1, got {max_tables!r}")
    return TableSpec(lo, hi, table_size)


def row_constant_k(k: torch.Tensor) -> torch.Tensor | None:
    """The per-chain coupling (B,) when every row of k (B, N-1) is constant, else None. N = 1 gives zeros."""
    b = k.shape[0]
    if k.shape[1] == 0:
        return torch.zeros(b, dtype=k.dtype, device=k.device)
    if all(s == 0 for s in k.stride()):
        return k[:, 0]
    first = k[:, :1]
    if bool((k == first).all()):
        return k[:, 0].contiguous()
    return None


def chain_keys(z: torch.Tensor, kb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Distinct (z, k) pairs over chains and each chain's index into them, with one device-to-host copy.

    Returns (pairs (U, 2) complex128 on the CPU, index (B,) int32 on z's device — or None when every chain
    shares one pair, the common case, so no index tensor is built or read).
    """
    zc = z.to(torch.complex128)
    kc = kb.to(torch.complex128)
    rows = torch.stack([zc.real, zc.imag, kc.real, kc.imag], dim=1).cpu()  # the one sync
    if bool((rows == rows[:1]).all()):
        uniq, index = rows[:1], None
    else:
        uniq, inv = torch.unique(rows, dim=0, return_inverse=True)
        index = inv.to(torch.int32).to(z.device)
    pairs = torch.stack([torch.complex(uniq[:, 0], uniq[:, 1]), torch.complex(uniq[:, 2], uniq[:, 3])], dim=1)
    return pairs, index


def build_tables(pairs: torch.Tensor, spec: TableSpec, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Tables Sigma(a_j - z_u; k_u) for the (U, 2) pairs: (U, size) complex of ``dtype``, built in float64."""
    grid = torch.linspace(spec.lo, spec.hi, spec.size, dtype=torch.float64)
    zs = pairs[:, 0:1]
    ks = pairs[:, 1:2]
    alpha = grid[None, :].to(torch.complex128) - zs
    return bulk_sigma(alpha, ks).to(dtype).to(device).contiguous()


def get_tables(pairs: torch.Tensor, spec: TableSpec, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Cached :func:`build_tables` (LRU of ``CACHE_ENTRIES`` keys; see module docstring)."""
    key = (
        tuple(complex(v) for v in pairs.reshape(-1).tolist()),
        spec.lo,
        spec.hi,
        spec.size,
        dtype,
        str(device),
    )
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    tab = build_tables(pairs, spec, dtype, device)
    _CACHE[key] = tab
    while len(_CACHE) > CACHE_ENTRIES:
        _CACHE.popitem(last=False)
    return tab


def extended_spec(spec: TableSpec, lo_data: float, hi_data: float) -> TableSpec:
    """A range covering [lo_data, hi_data]: the span doubled about its centre until it covers the data, the
    size grown with it (size - 1 doubles) so the step stays the same and nearby data hits the cache."""
    lo, hi, size = spec.lo, spec.hi, spec.size
    while lo_data < lo or hi_data > hi:
        centre, half = 0.5 * (lo + hi), (hi - lo)
        lo, hi = centre - half, centre + half
        size = 2 * size - 1
    return TableSpec(lo, hi, size)


def interpolate(tab_re_im: torch.Tensor, index: torch.Tensor | None, a: torch.Tensor, spec: TableSpec) -> torch.Tensor:
    """Linear interpolation of per-chain tables.

    tab_re_im: (U, size) complex; index: (B,) table id per chain (None: one table for all); a: (B, M) real,
    inside [lo, hi]
    (out-of-range elements must be replaced by the caller). Returns (B, M) complex.
    """
    u = (a - spec.lo) * (1.0 / spec.step)
    i0 = torch.clamp(torch.floor(u), 0, spec.size - 2)
    f = (u - i0).to(tab_re_im.real.dtype)
    i0 = i0.to(torch.long)
    flat = tab_re_im.reshape(-1)
    if index is None:
        base = torch.zeros((a.shape[0], 1), dtype=torch.long, device=a.device)
    else:
        base = (index.to(torch.long) * spec.size)[:, None]
    t0 = flat[base + i0]
    t1 = flat[base + i0 + 1]
    return t0 + f * (t1 - t0)


@dataclass(frozen=True)
class ClosurePlan:
    """Where the tail closure of each element comes from (see module docstring).

    source: "table" or "analytic"; tables: (U, size) complex or None; index: (B,) int32 table id per chain,
    or None (one table shared by every chain); spec: the table range actually used (extended when
    ``out_of_range="extend"``); any_outside: some real a lies outside [lo, hi] (those elements take the closed
    form) — None when the range was not checked on the host (the Triton kernel checks every element itself).
    """

    source: str
    tables: torch.Tensor | None
    index: torch.Tensor | None
    spec: TableSpec
    any_outside: bool | None


def plan_closure(
    a: torch.Tensor,
    k: torch.Tensor,
    z: torch.Tensor,
    spec: TableSpec,
    *,
    out_of_range: str,
    tail: str,
    max_tables: int,
    host_range_check: bool = True,
) -> ClosurePlan:
    """Decide table vs closed form for the tail closure and fetch (or build) the tables.

    a (B, N) real or complex, k (B, N-1), z (B,) complex. Tables are built in float64 and stored in the
    complex dtype of the work (complex64 for float32). ``host_range_check=False`` skips the min/max of a
    (a full read of a and a sync) when ``out_of_range="analytic"``: the caller must then test every element
    against [lo, hi] itself (the Triton kernel does).
    """
    if tail == "analytic" or a.is_complex() or a.numel() == 0:  # an empty batch: nothing to tabulate
        return ClosurePlan("analytic", None, None, spec, False)
    kb = row_constant_k(k)
    if kb is None:
        return ClosurePlan("analytic", None, None, spec, False)
    pairs, index = chain_keys(z, kb)
    if pairs.shape[0] > max_tables:
        return ClosurePlan("analytic", None, None, spec, False)
    if out_of_range == "analytic" and not host_range_check:
        tables = get_tables(pairs, spec, complex_dtype_of(a), a.device)
        return ClosurePlan("table", tables, index, spec, None)
    lo_d, hi_d = (float(v) for v in torch.aminmax(a))
    outside = lo_d < spec.lo or hi_d > spec.hi
    if outside and out_of_range == "raise":
        raise ValueError(
            f"table_range: a spans [{lo_d:g}, {hi_d:g}], outside the table range [{spec.lo:g}, {spec.hi:g}]; "
            "widen table_range or pass out_of_range='analytic' or 'extend'"
        )
    if outside and out_of_range == "extend":
        spec = extended_spec(spec, lo_d, hi_d)
        outside = False
    tables = get_tables(pairs, spec, complex_dtype_of(a), a.device)
    return ClosurePlan("table", tables, index, spec, outside)
