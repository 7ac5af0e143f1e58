"""The page's sections as template context: every table and sentence of the report, formatted (numbers ->
strings with units, :mod:`bkbench.harness.report.formatting`), so that the template only lays the strings out.

:func:`table` turns a computed frame into a ``{"head", "rows", "n", "fold"}`` table; one function per section
(:func:`headline`, :func:`fits`, :func:`crossover_matrices`, ... :func:`environment`) builds that section's context
from an :class:`~bkbench.harness.report.analysis.Analysis`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from bkbench.harness.report import usercall
from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.fits import Crossover
from bkbench.harness.report.formatting import (
    finite,
    fmt_alpha,
    fmt_err,
    fmt_int,
    fmt_n,
    fmt_num,
    fmt_si,
    fmt_time,
    shape_text,
    short_dtype,
    slice_text,
)
from bkbench.harness.report.series import Series

MAX_OPEN_ROWS = 25  # longer tables are folded into <details> (still complete)


def _txt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def table(df: pd.DataFrame, cols: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """``cols``: (header, column, formatter or None) -> {"head": [...], "rows": [[...]], "n": rows}."""
    rows = []
    if df is not None:
        for _, r in df.iterrows():
            rows.append([(f(r[c]) if f else _txt(r[c])) if c in r.index else "—" for _, c, f in cols])
    return {"head": [h for h, _, _ in cols], "rows": rows, "n": len(rows), "fold": len(rows) > MAX_OPEN_ROWS}


def _fit_phrase(s: Series) -> str:
    f = s.fit
    if f is None:
        return "no fit (fewer than two sizes)"
    ci = (f"95 % CI [{f.alpha_lo:.2f}, {f.alpha_hi:.2f}]" if f.n_points > 2 else "two points, no interval")
    return f"N^{f.alpha:.2f} ({ci}; fit over N = {fmt_n(f.n_min)}–{fmt_n(f.n_max)}, {f.n_points} sizes)"


def headline(an: Analysis) -> list[dict[str, Any]]:
    out = []
    for h in an.headline:
        title = f"{h['mode']} — {h['platform']}, {shape_text(h['shape'])}"
        if h["bk"] is None:
            out.append({"title": title, "rows": [], "sentence": (
                f"Baselines ({', '.join(h['baselines'])}) were measured at this shape in {h['mode']}, but no exact "
                "BK-core series with two or more sizes was, so no crossover can be stated here. Add BK-core cases "
                "at the same (B, d) over N to the suite to get one.")})
            continue
        bk: Series = h["bk"]
        rows = []
        attn = []
        for r in h["rows"]:
            c: Crossover = r["crossover"]
            oom = f"out of memory from N = {fmt_n(c.base_oom_n)}" if finite(c.base_oom_n) else ""
            rows.append({"baseline": r["baseline"], "kind": r["kind"],
                         "alpha": _fit_phrase(c.base), "n_star": c.text(), "fit": c.fit_text(), "oom": oom})
            if r["kind"] == "attention":
                attn.append(c)
        sentence = (f"The BK-core ({bk.label}, the fastest exact BK-core series at the largest size measured) "
                    f"scales as {_fit_phrase(bk)}.")
        if attn:
            parts = [f"{c.base.label} as {_fit_phrase(c.base)}" for c in attn]
            sentence += " Attention: " + "; ".join(parts) + "."
        else:
            sentence += " No attention baseline was measured at this shape."
        out.append({"title": title, "sentence": sentence, "rows": rows})
    return out


def fits(an: Analysis) -> dict[str, Any]:
    f = an.fits
    cols = [("platform", "platform", None), ("mode", "mode", None), ("kind", "kind", None),
            ("series", "label", None), ("shape", "shape", shape_text), ("timing", "timing_mode", None),
            ("drawn", "primary", lambda v: "yes" if v else ""),
            ("α", "alpha", lambda v: fmt_num(v, ".3f")), ("α 95 % CI", "alpha_lo", None),
            ("c", "c_s", lambda v: fmt_si(v, "s")), ("fit range N", "n_lo", None),
            ("points / sizes", "points", None), ("R² (log)", "r2", lambda v: fmt_num(v, ".4f"))]
    t = table(f, cols)
    if f is not None and len(f):
        for row, (_, r) in zip(t["rows"], f.iterrows()):
            row[8] = fmt_alpha(r["alpha_lo"], r["alpha_hi"])
            row[10] = f"{fmt_n(r['n_lo'])}–{fmt_n(r['n_hi'])}" if finite(r["n_lo"]) else "—"
            row[11] = f"{int(r['points'])} / {int(r['sizes'])}"
    return t


def crossover_matrices(an: Analysis) -> list[dict[str, Any]]:
    df = an.crossover_df
    if df is None or df.empty:
        return []
    out = []
    for (platform, mode, shape), g in df.groupby(["platform", "mode", "shape"], sort=False):
        bases = list(dict.fromkeys(g.sort_values(["baseline_kind", "baseline"])["baseline"]))
        bks = list(dict.fromkeys(g["bk"]))
        cells = {(r["bk"], r["baseline"]): r for _, r in g.iterrows()}
        rows = []
        for b in bks:
            row = []
            for base in bases:
                r = cells.get((b, base))
                row.append({"main": r["text"], "fit": r["fit_text"], "state": r["state"]} if r is not None else
                           {"main": "—", "fit": "", "state": "none"})
            rows.append({"bk": b, "cells": row})
        ooms = []
        for base in bases:
            v = g[g["baseline"] == base]["baseline_first_oom_n"].min()
            ooms.append(f"OOM from N = {fmt_n(v)}" if finite(v) else "no OOM recorded")
        out.append({"title": f"{mode} — {platform}, {shape_text(shape)}", "bases": bases, "rows": rows,
                    "ooms": ooms, "mode": mode})
    out.sort(key=lambda m: (m["mode"] != "fwd", m["title"]))
    return out


def oom(an: Analysis) -> dict[str, Any]:
    return table(an.oom, [("platform", "platform", None), ("kind", "kind", None), ("impl", "impl", None),
                           ("variant", "variant", None), ("dtype", "dtype", None), ("mode", "mode", None),
                           ("B", "batch", fmt_int), ("d", "d", fmt_int), ("largest N that ran", "largest_ok_n", fmt_n),
                           ("first N out of memory", "first_oom_n", fmt_n), ("reason", "reason", None)])


def roofline(an: Analysis) -> dict[str, Any]:
    roof = an.roofline.assign(timed=usercall.series_timed(an.roofline, an.loaded.df)) if len(an.roofline) else None
    return table(roof, [
        ("platform", "platform", None), ("mode", "mode", None), ("impl", "impl", None), ("variant", "variant", None),
        ("dtype", "dtype", None), ("timed", "timed", None), ("best GB/s", "best_gbps", lambda v: fmt_num(v, ".0f")),
        ("best % of copy BW", "best_pct", lambda v: fmt_num(v, ".1f")),
        ("at B·d·N", "best_elements", fmt_n), ("GB/s at largest size", "last_gbps", lambda v: fmt_num(v, ".0f")),
        ("% at largest size", "last_pct", lambda v: fmt_num(v, ".1f")), ("largest B·d·N", "last_elements", fmt_n),
        ("copy BW (GB/s)", "copy_bw", lambda v: fmt_num(v, ".0f"))])


def user_call(an: Analysis) -> dict[str, Any]:
    """User call (bk_core) vs bare kernel per BK-core series (bkbench.harness.report.usercall)."""
    def us(v: Any) -> str:
        return ("−" if v < 0 else "+") + fmt_time(abs(v)) if finite(v) else "—"

    def pct(v: Any) -> str:
        return fmt_num(v, ".1f")

    return table(usercall.overhead_table(an.loaded.df), [
        ("platform", "platform", None), ("mode", "mode", None), ("impl", "impl", None), ("variant", "variant", None),
        ("dtype", "dtype", None), ("smallest B·d·N", "small_elements", fmt_n),
        ("overhead there", "small_overhead_s", us),
        ("ratio there", "small_ratio", lambda v: fmt_num(v, ".2f") + "×" if finite(v) else "—"),
        ("largest B·d·N", "large_elements", fmt_n), ("user call (bk_core)", "large_call_s", fmt_time),
        ("bare kernel", "large_kernel_s", fmt_time), ("overhead", "large_overhead_s", us),
        ("ratio", "large_ratio", lambda v: fmt_num(v, ".2f") + "×" if finite(v) else "—"),
        ("user call % of copy BW", "large_call_pct", pct), ("bare kernel % of copy BW", "large_kernel_pct", pct)])


def energy(an: Analysis) -> dict[str, Any]:
    t = table(an.energy, [
        ("platform", "platform", None), ("mode", "mode", None), ("impl", "impl", None), ("variant", "variant", None),
        ("dtype", "dtype", None), ("N", "n", fmt_n), ("B", "batch", fmt_int), ("d", "d", fmt_int),
        ("J / call", "energy_j_per_call", lambda v: fmt_si(v, "J")),
        ("dynamic J / call", "energy_dynamic_j_per_call", lambda v: fmt_si(v, "J")),
        ("J / element", "j_per_element", lambda v: fmt_si(v, "J")),
        ("dynamic J / element", "dyn_j_per_element", lambda v: fmt_si(v, "J")),
        ("J / token", "j_per_token", lambda v: fmt_si(v, "J")),
        ("avg power", "power_avg_w", lambda v: fmt_num(v, ".0f") + " W" if finite(v) else "—"),
        ("idle power", "power_idle_w", lambda v: fmt_num(v, ".0f") + " W" if finite(v) else "—"),
        ("status", "energy_status", None), ("power-capped", "capped", lambda v: "CAPPED" if v else "")])
    return t


def pareto(an: Analysis) -> dict[str, Any]:
    p = an.pareto
    fmt = [("impl", "impl", None), ("variant", "variant", None), ("dtype", "dtype", short_dtype),
           ("time", "time_s", fmt_time), ("relative error", "rel_err", fmt_err),
           ("tolerance", "tolerance", fmt_err), ("on front", "front", lambda v: "★ front" if v else "")]
    shape = p["shape"]
    return {
        "shape": (f"{shape['mode']}, N = {fmt_n(shape['n'])}, {slice_text(shape['batch'], shape['d'])} "
                  f"on {shape['platform']}") if shape else "",
        "points": table(p["points"], fmt),
        "fronts": table(p["fronts"], [("platform", "platform", None), ("mode", "mode", None), ("N", "n", fmt_n),
                                       ("B", "batch", fmt_int), ("d", "d", fmt_int)] + fmt[:-1]),
    }


def sparsity(an: Analysis) -> dict[str, Any]:
    return table(an.sparsity, [
        ("platform", "platform", None), ("mode", "mode", None), ("kind", "kind", None), ("impl", "impl", None),
        ("variant", "variant", None), ("dtype", "dtype", None), ("N", "n", fmt_n), ("B", "batch", fmt_int),
        ("d", "d", fmt_int), ("sparsity", "sparsity", lambda v: fmt_num(v, "g")), ("time", "time_s", fmt_time),
        ("speed-up vs s = 0", "speedup_vs_dense", lambda v: fmt_num(v, ".2f") + "×" if finite(v) else "—")])


def tuning(an: Analysis) -> dict[str, Any]:
    tu = an.tuning
    x = {"speedup_store": table(tu["speedup_store"], [
        ("platform", "platform", None), ("impl", "impl", None), ("dtype", "dtype", None), ("mode", "mode", None),
        ("N", "n", fmt_n), ("B", "batch", fmt_int), ("d", "d", fmt_int), ("default", "default_s", fmt_time),
        ("tuned", "tuned_s", fmt_time), ("speed-up", "speedup", lambda v: fmt_num(v, ".2f") + "×")]),
        "speedup_json": table(tu["speedup_json"], [
            ("source", "source", None), ("GPU", "gpu", None), ("impl", "impl", None), ("dtype", "dtype", None),
            ("coupling", "coupling", None), ("shape bucket", "bucket", None), ("pass", "mode", None),
            ("default", "default_s", fmt_time), ("tuned", "tuned_s", fmt_time),
            ("speed-up", "speedup", lambda v: fmt_num(v, ".2f") + "×"), ("tuned config", "config", None)]),
        "dispatch_store": table(tu["dispatch_store"], [
            ("platform", "platform", None), ("dtype", "dtype", None), ("mode", "mode", None), ("N", "n", fmt_n),
            ("B", "batch", fmt_int), ("auto chose", "impl", None), ("status", "status", None),
            ("time", "time_s", fmt_time)]),
        "dispatch_json": table(tu["dispatch_json"], [
            ("source", "source", None), ("N", "n", fmt_n), ("B", "batch", fmt_int), ("dtype", "dtype", None),
            ("impl", "impl", None), ("reason", "reason", None)]),
        "measured_best": table(tu["measured_best"], [
            ("platform", "platform", None), ("dtype", "dtype", None), ("mode", "mode", None), ("N", "n", fmt_n),
            ("B", "batch", fmt_int), ("fastest", "impl", None), ("variant", "variant", None),
            ("time", "time_s", fmt_time), ("implementations measured", "candidates", None)])}
    x["any_tuning"] = any(x[k]["n"] for k in ("speedup_store", "speedup_json", "dispatch_store", "dispatch_json"))
    return x


def comparison(an: Analysis) -> dict[str, Any] | None:
    if an.comparison is None:
        return None
    c = an.comparison
    a, b = an.compare_runs
    geo = c["geomean_ratio"]
    counts = c["counts"]
    summary = (f"{len(c['cases'])} cases timed in both runs; geometric-mean time ratio run {b['run']} / run {a['run']}"
               f" = {fmt_num(geo, '.3f')}. "
               f"{counts.get('B faster', 0)} significantly faster in run {b['run']}, "
               f"{counts.get('B slower', 0)} significantly slower, "
               f"{counts.get('no significant change', 0)} without a significant change.")
    cases = table(c["cases"], [
        ("kind", "kind", None), ("impl", "impl", None), ("variant", "variant", None), ("dtype", "dtype", short_dtype),
        ("mode", "mode", None), ("N", "n", fmt_n), ("B", "batch", fmt_int), ("d", "d", fmt_int),
        ("s", "sparsity", lambda v: fmt_num(v, "g")), (f"run {a['run']}", "time_a", fmt_time),
        (f"run {b['run']}", "time_b", fmt_time), ("ratio B/A", "ratio", lambda v: fmt_num(v, ".3f")),
        ("95 % CI", "ratio_lo", None), ("p (Mann–Whitney)", "p", lambda v: fmt_num(v, ".2g")),
        ("q (BH)", "q", lambda v: fmt_num(v, ".2g")), ("verdict", "verdict", None), ("method", "method", None)])
    if len(c["cases"]):
        for row, (_, r) in zip(cases["rows"], c["cases"].iterrows()):
            row[12] = (f"{r['ratio_lo']:.3f}–{r['ratio_hi']:.3f}" if finite(r["ratio_lo"]) and finite(r["ratio_hi"])
                       else "—")
    changes = table(c["status_changes"], [("case", "case_id", None), (f"status in {a['run']}", "status_a", None),
                                           (f"status in {b['run']}", "status_b", None),
                                           (f"reason in {a['run']}", "reason_a", None),
                                           (f"reason in {b['run']}", "reason_b", None)])
    return {"a": a["run"], "b": b["run"], "a_label": run_title(a), "b_label": run_title(b), "summary": summary,
            "cases": cases, "changes": changes, "only_a": c["only_a"], "only_b": c["only_b"]}


def failures(an: Analysis) -> dict[str, Any]:
    t = table(an.failures, [
        ("status", "status", None), ("run", "run", None), ("kind", "kind", None), ("impl", "impl", None),
        ("variant", "variant", None), ("dtype", "dtype", None), ("mode", "mode", None), ("N", "n", fmt_n),
        ("B", "batch", fmt_int), ("d", "d", fmt_int), ("s", "sparsity", lambda v: fmt_num(v, "g")),
        ("rel. error", "rel_err", fmt_err), ("reason", "reason", None)])
    counts = an.status_counts
    ctab = {"head": [], "rows": []}
    if counts is not None and len(counts):
        cols = [c for c in ("ok", "incorrect", "oom", "timeout", "crash", "skipped") if c in counts.columns]
        cols += [c for c in counts.columns if c not in cols]
        ctab = {"head": ["impl", *cols], "rows": [[impl, *[str(int(counts.loc[impl, c])) for c in cols]]
                                                  for impl in counts.index]}
    return {"list": t, "counts": ctab}


ENV_KEYS = [("GPU", "gpu"), ("driver", "driver"), ("CUDA", "cuda"), ("torch", "torch"), ("triton", "triton"),
            ("python", "python"), ("host", "host"), ("platform", "platform"), ("git sha", "git_sha"),
            ("date", "date"), ("copy bandwidth (GB/s)", "copy_bandwidth_gbs"),
            ("SM clock max (MHz)", "sm_clock_max_mhz"), ("power limit (W)", "power_limit_w"),
            ("TRITON_INTERPRET", "triton_interpret")]


def run_title(r: dict[str, Any]) -> str:
    bits = [f"run {r['run']}", r.get("suite") or "", r.get("gpu") or r.get("device") or "",
            (r.get("git_sha") or "")[:12], r.get("label") or ""]
    return " · ".join(b for b in bits if b)


def environment(an: Analysis) -> list[dict[str, Any]]:
    df = an.loaded.df
    out = []
    for r in an.loaded.runs:
        env = r["env"] or {}
        items = [("run", r["run"]), ("database", r["db"]), ("suite", _txt(r.get("suite"))),
                 ("label", _txt(r.get("label"))), ("status", _txt(r.get("status"))),
                 ("started", _txt(r.get("started"))), ("finished", _txt(r.get("finished"))),
                 ("device", _txt(r.get("device")))]
        for name, key in ENV_KEYS:
            v = env.get(key, r.get(key))
            if v not in (None, ""):
                items.append((name, str(v)))
        rows = df[df["run"] == r["run"]]
        counts = rows["status"].value_counts().to_dict()
        stored = an.loaded.stored.get(r["run"], 0)
        used = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        if stored == 0:
            used = "none (the run holds no results)"
        elif not used:
            used = f"none: all {stored} of its cases were measured again in a later selected run"
        elif len(rows) < stored:
            used += f" ({stored - len(rows)} more superseded by a later selected run)"
        items.append(("cases used in this report", used))
        out.append({"title": run_title(r), "fields": items,
                    "json": json.dumps(env, indent=1, sort_keys=True, default=str)})
    return out


def synthetic(an: Analysis) -> bool:
    for r in an.loaded.runs + list(an.compare_runs):
        text = " ".join(str(x) for x in (r.get("label"), r.get("gpu"), (r.get("env") or {}).get("note")))
        if "synthetic" in text.lower():
            return True
    return False
