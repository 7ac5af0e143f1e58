"""The autotuning section's data: tuned-vs-default speed-ups and dispatch maps, from the store's rows and from
tuning JSON documents (the :mod:`bkbench.harness.tuning` cache format, or any JSON holding tuned and default times).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from bkbench.harness.report.fields import as_float, parse_json

AUTO_KEYS = ("auto_impl", "chosen_impl", "impl_chosen", "dispatch_impl", "selected_impl")
TUNED_KEYS = ("tuned_s", "tuned_time_s", "time_tuned_s", "best_s", "best_time_s")
DEFAULT_KEYS = ("default_s", "default_time_s", "time_default_s")
# bkbench.harness.tuning entries: {"ms": tuned, "default_ms": default, "bwd_ms": ..., "bwd_default_ms": ...}
# (milliseconds)
MS_PAIRS = (("ms", "default_ms", "fwd"), ("bwd_ms", "bwd_default_ms", "bwd"))


def _walk(obj: Any, path: tuple = ()) -> list[tuple[tuple, dict]]:
    out = []
    if isinstance(obj, dict):
        out.append((path, obj))
        for k, v in obj.items():
            out.extend(_walk(v, (*path, str(k))))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_walk(v, (*path, str(i))))
    return out


def tuning_from_json(docs: list[tuple[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tuned-vs-default records and dispatch entries found in tuning JSON documents ``[(source, obj)]``.

    A tuning record is any JSON object holding a tuned time (one of ``TUNED_KEYS``) and a default time (one of
    ``DEFAULT_KEYS``), in seconds, or — the :mod:`bkbench.harness.tuning` cache format — ``ms``/``default_ms`` (forward)
    and ``bwd_ms``/``bwd_default_ms`` (backward) in milliseconds; its bucket is its ``bucket``/``shape``/``key``
    field or its key in the document (``"GPU|dtype|coupling|bucket"`` keys are split into those fields).
    A dispatch entry is any object with an implementation (``impl`` or one of ``AUTO_KEYS``) and
    both ``n``/``N`` and ``batch``/``B``."""
    tune, disp = [], []
    for source, doc in docs:
        for path, d in _walk(doc):
            tk = next((k for k in TUNED_KEYS if k in d), None)
            dk = next((k for k in DEFAULT_KEYS if k in d), None)
            pairs = [(tk, dk, "", 1.0)] if tk and dk else []
            pairs += [(a, b, m, 1e-3) for a, b, m in MS_PAIRS if a in d and b in d]
            key = str(d.get("bucket", d.get("shape", d.get("key", path[-1] if path else "(root)"))))
            parts = key.split("|")  # bkbench.harness.tuning keys: "GPU|dtype|coupling|bucket"
            for t_key, d_key, mode, scale in pairs:
                t_val, d_val = as_float(d[t_key]) * scale, as_float(d[d_key]) * scale
                if not (t_val > 0 and d_val > 0 and math.isfinite(t_val) and math.isfinite(d_val)):
                    continue
                cfg = d.get("bwd_config" if mode == "bwd" else "config", d.get("tuned_config", ""))
                tune.append({"source": source, "impl": d.get("impl", "triton_fused" if scale != 1.0 else ""),
                             "gpu": parts[0] if len(parts) == 4 else "", "bucket": parts[-1],
                             "coupling": parts[2] if len(parts) == 4 else "",
                             "dtype": d.get("dtype", parts[1] if len(parts) == 4 else ""), "mode": mode,
                             "default_s": d_val, "tuned_s": t_val,
                             "config": json.dumps(cfg, sort_keys=True) if isinstance(cfg, dict) else str(cfg),
                             "speedup": d_val / t_val})
            impl = next((d[k] for k in ("impl", *AUTO_KEYS) if isinstance(d.get(k), str)), None)
            n = d.get("n", d.get("N"))
            b = d.get("batch", d.get("B"))
            if impl and n is not None and b is not None and not pairs:
                disp.append({"source": source, "n": as_float(n), "batch": as_float(b), "impl": impl,
                             "dtype": d.get("dtype", ""), "reason": str(d.get("reason", ""))})
    return pd.DataFrame(tune), pd.DataFrame(disp)


def tuning(df: pd.DataFrame, docs: list[tuple[str, Any]] | None = None,
           facts: dict[str, dict[str, Any]] | None = None) -> dict[str, pd.DataFrame]:
    """Autotuning data from the store and from tuning JSON documents.

    Store conventions read here: rows whose options carry ``"config": "default"`` / ``"config": "tuned"``
    (the same case otherwise) give a tuned-vs-default speedup; rows with ``impl == "auto"`` whose metrics name
    the implementation auto dispatched to (``auto_impl`` and synonyms) give the dispatch map. ``measured``
    is the fastest exact BK-core implementation per (platform, dtype, mode, N, batch) among the benchmark rows
    (what a data-driven ``impl="auto"`` should pick); implementations the registry (``facts``) marks as
    approximate are left out of it."""
    speed = []
    ok = df[df["time_s"].notna()].copy()
    opts = ok["options_json"].map(parse_json)
    ok["_cfg"] = ok["tuning_config"]
    ok["_rest"] = opts.map(lambda o: str(sorted((k, str(v)) for k, v in o.items() if k != "config"))
                           if isinstance(o, dict) else "[]")
    tuned_rows = ok[ok["_cfg"].isin(["default", "tuned"])]
    keys = ["platform", "impl", "dtype", "mode", "n", "batch", "d", "sparsity", "_rest"]
    for key, g in tuned_rows.groupby(keys, dropna=False):
        per = g.groupby("_cfg")["time_s"].median()
        if "default" in per and "tuned" in per:
            speed.append(dict(zip(keys[:-1], key[:-1])) | {"source": "store", "default_s": per["default"],
                                                          "tuned_s": per["tuned"],
                                                          "speedup": per["default"] / per["tuned"]})
    store_speed = pd.DataFrame(speed)
    json_speed, json_disp = tuning_from_json(docs or [])
    auto = df[(df["impl"] == "auto")].copy()
    disp = []
    for _, r in auto.iterrows():
        m = parse_json(r["metrics_json"]) or {}
        chosen = next((m[k] for k in AUTO_KEYS if isinstance(m.get(k), str)), None)
        disp.append({"source": "store", "platform": r["platform"], "dtype": r["dtype"], "mode": r["mode"],
                     "n": r["n"], "batch": r["batch"], "impl": chosen or "(not recorded)",
                     "status": r["status"], "time_s": r["time_s"]})
    store_disp = pd.DataFrame(disp)
    # fastest measured exact BK implementation per (platform, dtype, mode, n, batch)
    approx = {name for name, f in (facts or {}).items() if f.get("exact") is False}
    bk = ok[(ok["kind"] == "bk") & (ok["sparsity"] == 0) & (ok["impl"] != "auto") & ok["_cfg"].isna()
            & ~ok["impl"].isin(approx)]
    measured = []
    for key, g in bk.groupby(["platform", "dtype", "mode", "n", "batch"], dropna=False):
        best = g.loc[g["time_s"].idxmin()]
        measured.append(dict(zip(["platform", "dtype", "mode", "n", "batch"], key)) | {
            "impl": best["impl"], "variant": best["variant"], "time_s": best["time_s"],
            "candidates": g["impl"].nunique()})
    return {"speedup_store": store_speed, "speedup_json": json_speed, "dispatch_store": store_disp,
            "dispatch_json": json_disp, "measured_best": pd.DataFrame(measured)}
