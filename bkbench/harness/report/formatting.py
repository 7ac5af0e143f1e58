"""Numbers, sizes, times, dtypes and shapes as the report's text shows them ("4k", "12.3 µs", "bf16",
"B=8, d=512", "12 nJ", "—" for a missing value).

Shared by the analysis (crossover texts), the figures and the page; it imports nothing from the rest of
:mod:`bkbench.harness.report`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

SHORT_DTYPE = {"float32": "f32", "float64": "f64", "bfloat16": "bf16", "float16": "f16", "complex64": "c64",
               "complex128": "c128"}


def short_dtype(dtype: str) -> str:
    return SHORT_DTYPE.get(dtype, dtype)


def fmt_n(n: float) -> str:
    """Sizes: 256, 4096 -> "4k" (binary k for powers of two), 1.2e5 -> "120k", inf -> "∞"."""
    if n is None or not np.isfinite(n):
        return "∞" if n == math.inf else ("—" if n is None or np.isnan(n) else "-∞")
    n = float(n)
    if n < 1000:
        return f"{n:.3g}"
    if n >= 1e12:
        return f"{n:.2g}"
    for scale, unit in ((1 << 30, "Gi"), (1 << 20, "Mi"), (1 << 10, "k")):
        if n >= scale and (n / scale).is_integer() and (n / scale) >= 1:
            return f"{int(n / scale)}{unit}"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def fmt_n_bound(v: float, common: np.ndarray) -> str:
    if v == -math.inf:
        return f"<{fmt_n(common[0])}"
    if v == math.inf:
        return f">{fmt_n(common[-1])}"
    return fmt_n(v)


def fmt_time(t: float) -> str:
    """Seconds -> "12.3 µs", "4.56 ms", "1.2 s"."""
    if t is None or not np.isfinite(t):
        return "—"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if abs(t) >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def shape_text(shape: str) -> str:
    """``"B8_d512"`` -> ``"B=8, d=512"``; ``"E16777216"`` -> constant-work description."""
    m = re.fullmatch(r"B(-?\d+)_d(-?\d+)", shape or "")
    if m:
        parts = [f"B={m.group(1)}" if m.group(1) != "-1" else "", f"d={m.group(2)}" if m.group(2) != "-1" else ""]
        return ", ".join(p for p in parts if p) or "shape not recorded"
    m = re.fullmatch(r"E(\d+)", shape or "")
    if m:
        return f"constant work B·d·N = {fmt_n(float(m.group(1)))} elements (B·d shrinks as N grows)"
    return shape or "shape not recorded"


def slice_text(batch: float, d: float) -> str:
    """``8, 512`` -> ``"B=8, d=512"`` (a missing or negative value is left out; neither: ``"all shapes"``)."""
    parts = []
    if batch is not None and np.isfinite(batch) and batch >= 0:
        parts.append(f"B={int(batch)}")
    if d is not None and np.isfinite(d) and d >= 0:
        parts.append(f"d={int(d)}")
    return ", ".join(parts) or "all shapes"


def finite(v: Any) -> bool:
    """True when ``v`` converts to a finite float."""
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_si(v: Any, unit: str, digits: int = 3) -> str:
    """1.2e-8, "J" -> "12 nJ"."""
    if not finite(v):
        return "—"
    v = float(v)
    if v == 0:
        return f"0 {unit}"
    for scale, p in ((1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g} {p}{unit}"
    return f"{v:.{digits}g} {unit}"


def fmt_num(v: Any, fmt: str = ".3g") -> str:
    return format(float(v), fmt) if finite(v) else "—"


def fmt_int(v: Any) -> str:
    return f"{int(float(v))}" if finite(v) and float(v) >= 0 else "—"


def fmt_alpha(lo: Any, hi: Any) -> str:
    return f"[{float(lo):.3f}, {float(hi):.3f}]" if finite(lo) and finite(hi) else "n/a (< 3 points)"


def fmt_err(v: Any) -> str:
    return f"{float(v):.2e}" if finite(v) else "—"
