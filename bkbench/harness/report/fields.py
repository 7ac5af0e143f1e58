"""Decoding the fields of stored result rows: JSON columns, option sets, raw timing samples, loose numbers.

The lowest layer of the report: it imports nothing from the rest of :mod:`bkbench.harness.report`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd


def parse_json(text: Any) -> Any:
    """JSON text -> object; None/NaN/empty -> None; unparsable text -> None."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or text == "":
        return None
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _compact(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_compact(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        return "none"
    return str(value)


def variant_of(options_json: Any) -> str:
    """``'{"window": 8, "gauss": "table"}'`` -> ``"gauss=table, window=8"`` (keys sorted); none -> ``""``."""
    opts = parse_json(options_json)
    if not isinstance(opts, dict) or not opts:
        return ""
    return ", ".join(f"{k}={_compact(v)}" for k, v in sorted(opts.items()))


def samples_of(row: pd.Series | dict[str, Any]) -> np.ndarray | None:
    """The raw timing samples of a row (seconds), or None when absent/unusable.

    Accepts a JSON list of numbers or an object with a ``samples`` / ``samples_s`` list. Samples whose
    median disagrees with ``time_median_s`` by more than a factor 2 are treated as unusable (wrong unit or
    mismatched row) rather than silently rescaled.
    """
    raw = parse_json(row.get("samples_json"))
    if isinstance(raw, dict):
        raw = raw.get("samples_s", raw.get("samples"))
    if not isinstance(raw, list) or not raw:
        return None
    try:
        arr = np.asarray(raw, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if arr.size == 0:
        return None
    med = row.get("time_median_s")
    if med is not None and np.isfinite(med) and med > 0:
        ratio = float(np.median(arr)) / float(med)
        if not 0.5 <= ratio <= 2.0:
            return None
    return arr


def as_float(v: Any) -> float:
    """``float(v)``, or NaN when ``v`` is not a number."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f
