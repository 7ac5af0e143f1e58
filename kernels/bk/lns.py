"""``lns``: the BK-core in log-polar (complex LNS) arithmetic, PyTorch.

Exact (up to rounding). The LU/UL pivots D_i, E_i are carried as (log|x|, arg x); products and quotients are
additions; every sum goes through the Gaussian logarithm log(1 + r e^{i delta}), either computed
(``gauss="computed"``) or read from a Taylor table (``gauss="table"``). Chunked: per-chunk LNS transfer
matrices, a carry loop over chunks, then the in-chunk pivots (kernels/bk/_lns.py). Never overflows, and the
log-magnitudes stay O(1) at any N (pivot ratios, not determinants), so float32 accumulators suffice.
Options: ``gauss`` ("computed" | "table"), ``chunk`` (sites per chunk; None = ceil(sqrt(N))),
``table_shape`` ((NR, ND) nodes of the Gaussian-log table).
"""

from __future__ import annotations

from typing import Any

import torch

from bkbench.kernels.bk._lns import DEFAULT_TABLE_SHAPE, GAUSS_MODES, lns_green_torch
from bkbench.registry import is_uniform, register

DEFAULTS: dict[str, Any] = {"gauss": "computed", "chunk": None, "table_shape": DEFAULT_TABLE_SHAPE}


def check_lns_options(opts: dict[str, Any], name: str) -> None:
    """ValueError naming the bad option and the fix."""
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"options: unknown option(s) {sorted(unknown)} for {name}; known: {sorted(DEFAULTS)}")
    if opts["gauss"] not in GAUSS_MODES:
        raise ValueError(f"gauss: must be one of {GAUSS_MODES}, got {opts['gauss']!r}")
    c = opts["chunk"]
    if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
        raise ValueError(f"chunk: must be None (auto) or an integer >= 1, got {c!r}")
    ts = opts["table_shape"]
    if not (isinstance(ts, (tuple, list)) and len(ts) == 2 and all(isinstance(v, int) and v >= 2 for v in ts)):
        raise ValueError(f"table_shape: must be a pair (NR, ND) of integers >= 2, got {ts!r}")


def check_table_precision(gauss: str, cdt: torch.dtype) -> None:
    """The Gaussian-log table is float32-accurate (~3e-7 per addition): refuse it for float64 work."""
    if gauss == "table" and cdt == torch.complex128:
        raise ValueError(
            "gauss: 'table' reads the Gaussian logarithm to ~3e-7 (a float32-level approximation), which would "
            "break the float64 tolerance; use gauss='computed' for float64 inputs or pass float32 inputs"
        )


def complex_work_dtype(a: torch.Tensor) -> torch.dtype:
    return torch.complex128 if a.dtype in (torch.float64, torch.complex128) else torch.complex64


@register(
    "lns",
    kind="bk",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128),
    differentiable=False,
    defaults=dict(DEFAULTS),
    description="pivots in log-polar arithmetic (Gaussian log computed or tabulated), chunked carries",
)
def lns(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, **options: Any) -> torch.Tensor:
    """a (B, N) real/complex, k (B, N-1), z (B,) complex -> G (B, N) complex64/complex128."""
    opts = {**DEFAULTS, **options}
    check_lns_options(opts, "lns")
    cdt = complex_work_dtype(a)
    check_table_precision(opts["gauss"], cdt)
    alpha = a.to(cdt) - z.to(cdt)[:, None]
    return lns_green_torch(alpha, k, is_uniform(k), opts["gauss"], opts["chunk"], tuple(opts["table_shape"]))
