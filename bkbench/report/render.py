"""Render an :class:`~bkbench.report.analysis.Analysis` to a self-contained HTML page.

Output layout (``out_dir``)::

    index.html          the report (no external scripts, styles or fonts)
    figures/*.png       the figures (or embedded as data: URIs with ``embed=True``)
    data/*.csv          the computed tables (fits, crossovers, failures, comparison) for checking the numbers

Formatting happens here (numbers -> strings with units); the template only lays the strings out.

Publishing is crash-safe: everything is rendered into a staging directory inside ``out_dir`` first; then the
figures move into ``figures/`` under content-hashed names (``crossover_0-1a2b3c4d5e.png``: an unchanged figure
keeps its name), the CSVs replace theirs one by one, and ``index.html`` is replaced last (``os.replace``, atomic).
Files the new page no longer links are deleted only after that. A report killed at any point leaves an
``index.html`` -- the old or the new one -- whose figures and tables all exist.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from bkbench.report import plots, usercall
from bkbench.report.analysis import Analysis, Crossover, Series, fmt_n, fmt_time, shape_text, short_dtype

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
MAX_OPEN_ROWS = 25  # longer tables are folded into <details> (still complete)


# -- number formatting ---------------------------------------------------------------------------------------


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_si(v: Any, unit: str, digits: int = 3) -> str:
    """1.2e-8, "J" -> "12 nJ"."""
    if not _finite(v):
        return "—"
    v = float(v)
    if v == 0:
        return f"0 {unit}"
    for scale, p in ((1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g} {p}{unit}"
    return f"{v:.{digits}g} {unit}"


def fmt_num(v: Any, fmt: str = ".3g") -> str:
    return format(float(v), fmt) if _finite(v) else "—"


def fmt_int(v: Any) -> str:
    return f"{int(float(v))}" if _finite(v) and float(v) >= 0 else "—"


def fmt_alpha(lo: Any, hi: Any) -> str:
    return f"[{float(lo):.3f}, {float(hi):.3f}]" if _finite(lo) and _finite(hi) else "n/a (< 3 points)"


def fmt_err(v: Any) -> str:
    return f"{float(v):.2e}" if _finite(v) else "—"


def _txt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _table(df: pd.DataFrame, cols: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """``cols``: (header, column, formatter or None) -> {"head": [...], "rows": [[...]], "n": rows}."""
    rows = []
    if df is not None:
        for _, r in df.iterrows():
            rows.append([(f(r[c]) if f else _txt(r[c])) if c in r.index else "—" for _, c, f in cols])
    return {"head": [h for h, _, _ in cols], "rows": rows, "n": len(rows), "fold": len(rows) > MAX_OPEN_ROWS}


# -- sections ----------------------------------------------------------------------------------------------------


def _fit_phrase(s: Series) -> str:
    f = s.fit
    if f is None:
        return "no fit (fewer than two sizes)"
    ci = (f"95 % CI [{f.alpha_lo:.2f}, {f.alpha_hi:.2f}]" if f.n_points > 2 else "two points, no interval")
    return f"N^{f.alpha:.2f} ({ci}; fit over N = {fmt_n(f.n_min)}–{fmt_n(f.n_max)}, {f.n_points} sizes)"


def _headline(an: Analysis) -> list[dict[str, Any]]:
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
            oom = f"out of memory from N = {fmt_n(c.base_oom_n)}" if _finite(c.base_oom_n) else ""
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


def _fits(an: Analysis) -> dict[str, Any]:
    f = an.fits
    cols = [("platform", "platform", None), ("mode", "mode", None), ("kind", "kind", None),
            ("series", "label", None), ("shape", "shape", shape_text), ("timing", "timing_mode", None),
            ("drawn", "primary", lambda v: "yes" if v else ""),
            ("α", "alpha", lambda v: fmt_num(v, ".3f")), ("α 95 % CI", "alpha_lo", None),
            ("c", "c_s", lambda v: fmt_si(v, "s")), ("fit range N", "n_lo", None),
            ("points / sizes", "points", None), ("R² (log)", "r2", lambda v: fmt_num(v, ".4f"))]
    t = _table(f, cols)
    if f is not None and len(f):
        for row, (_, r) in zip(t["rows"], f.iterrows()):
            row[8] = fmt_alpha(r["alpha_lo"], r["alpha_hi"])
            row[10] = f"{fmt_n(r['n_lo'])}–{fmt_n(r['n_hi'])}" if _finite(r["n_lo"]) else "—"
            row[11] = f"{int(r['points'])} / {int(r['sizes'])}"
    return t


def _crossover_matrices(an: Analysis) -> list[dict[str, Any]]:
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
            ooms.append(f"OOM from N = {fmt_n(v)}" if _finite(v) else "no OOM recorded")
        out.append({"title": f"{mode} — {platform}, {shape_text(shape)}", "bases": bases, "rows": rows,
                    "ooms": ooms, "mode": mode})
    out.sort(key=lambda m: (m["mode"] != "fwd", m["title"]))
    return out


def _oom(an: Analysis) -> dict[str, Any]:
    return _table(an.oom, [("platform", "platform", None), ("kind", "kind", None), ("impl", "impl", None),
                           ("variant", "variant", None), ("dtype", "dtype", None), ("mode", "mode", None),
                           ("B", "batch", fmt_int), ("d", "d", fmt_int), ("largest N that ran", "largest_ok_n", fmt_n),
                           ("first N out of memory", "first_oom_n", fmt_n), ("reason", "reason", None)])


def _roofline(an: Analysis) -> dict[str, Any]:
    roof = an.roofline.assign(timed=usercall.series_timed(an.roofline, an.loaded.df)) if len(an.roofline) else None
    return _table(roof, [
        ("platform", "platform", None), ("mode", "mode", None), ("impl", "impl", None), ("variant", "variant", None),
        ("dtype", "dtype", None), ("timed", "timed", None), ("best GB/s", "best_gbps", lambda v: fmt_num(v, ".0f")),
        ("best % of copy BW", "best_pct", lambda v: fmt_num(v, ".1f")),
        ("at B·d·N", "best_elements", fmt_n), ("GB/s at largest size", "last_gbps", lambda v: fmt_num(v, ".0f")),
        ("% at largest size", "last_pct", lambda v: fmt_num(v, ".1f")), ("largest B·d·N", "last_elements", fmt_n),
        ("copy BW (GB/s)", "copy_bw", lambda v: fmt_num(v, ".0f"))])


def _usercall(an: Analysis) -> dict[str, Any]:
    """User call (bk_core) vs bare kernel per BK-core series (bkbench.report.usercall)."""
    def us(v: Any) -> str:
        return ("−" if v < 0 else "+") + fmt_time(abs(v)) if _finite(v) else "—"

    def pct(v: Any) -> str:
        return fmt_num(v, ".1f")

    return _table(usercall.overhead_table(an.loaded.df), [
        ("platform", "platform", None), ("mode", "mode", None), ("impl", "impl", None), ("variant", "variant", None),
        ("dtype", "dtype", None), ("smallest B·d·N", "small_elements", fmt_n),
        ("overhead there", "small_overhead_s", us),
        ("ratio there", "small_ratio", lambda v: fmt_num(v, ".2f") + "×" if _finite(v) else "—"),
        ("largest B·d·N", "large_elements", fmt_n), ("user call (bk_core)", "large_call_s", fmt_time),
        ("bare kernel", "large_kernel_s", fmt_time), ("overhead", "large_overhead_s", us),
        ("ratio", "large_ratio", lambda v: fmt_num(v, ".2f") + "×" if _finite(v) else "—"),
        ("user call % of copy BW", "large_call_pct", pct), ("bare kernel % of copy BW", "large_kernel_pct", pct)])


def _energy(an: Analysis) -> dict[str, Any]:
    t = _table(an.energy, [
        ("platform", "platform", None), ("mode", "mode", None), ("impl", "impl", None), ("variant", "variant", None),
        ("dtype", "dtype", None), ("N", "n", fmt_n), ("B", "batch", fmt_int), ("d", "d", fmt_int),
        ("J / call", "energy_j_per_call", lambda v: fmt_si(v, "J")),
        ("dynamic J / call", "energy_dynamic_j_per_call", lambda v: fmt_si(v, "J")),
        ("J / element", "j_per_element", lambda v: fmt_si(v, "J")),
        ("dynamic J / element", "dyn_j_per_element", lambda v: fmt_si(v, "J")),
        ("J / token", "j_per_token", lambda v: fmt_si(v, "J")),
        ("avg power", "power_avg_w", lambda v: fmt_num(v, ".0f") + " W" if _finite(v) else "—"),
        ("idle power", "power_idle_w", lambda v: fmt_num(v, ".0f") + " W" if _finite(v) else "—"),
        ("status", "energy_status", None), ("power-capped", "capped", lambda v: "CAPPED" if v else "")])
    return t


def _pareto(an: Analysis) -> dict[str, Any]:
    p = an.pareto
    fmt = [("impl", "impl", None), ("variant", "variant", None), ("dtype", "dtype", short_dtype),
           ("time", "time_s", fmt_time), ("relative error", "rel_err", fmt_err),
           ("tolerance", "tolerance", fmt_err), ("on front", "front", lambda v: "★ front" if v else "")]
    shape = p["shape"]
    return {
        "shape": (f"{shape['mode']}, N = {fmt_n(shape['n'])}, {plots._slice_text(shape['batch'], shape['d'])} "
                  f"on {shape['platform']}") if shape else "",
        "points": _table(p["points"], fmt),
        "fronts": _table(p["fronts"], [("platform", "platform", None), ("mode", "mode", None), ("N", "n", fmt_n),
                                       ("B", "batch", fmt_int), ("d", "d", fmt_int)] + fmt[:-1]),
    }


def _sparsity(an: Analysis) -> dict[str, Any]:
    return _table(an.sparsity, [
        ("platform", "platform", None), ("mode", "mode", None), ("kind", "kind", None), ("impl", "impl", None),
        ("variant", "variant", None), ("dtype", "dtype", None), ("N", "n", fmt_n), ("B", "batch", fmt_int),
        ("d", "d", fmt_int), ("sparsity", "sparsity", lambda v: fmt_num(v, "g")), ("time", "time_s", fmt_time),
        ("speed-up vs s = 0", "speedup_vs_dense", lambda v: fmt_num(v, ".2f") + "×" if _finite(v) else "—")])


def _tuning(an: Analysis) -> dict[str, Any]:
    tu = an.tuning
    x = {"speedup_store": _table(tu["speedup_store"], [
        ("platform", "platform", None), ("impl", "impl", None), ("dtype", "dtype", None), ("mode", "mode", None),
        ("N", "n", fmt_n), ("B", "batch", fmt_int), ("d", "d", fmt_int), ("default", "default_s", fmt_time),
        ("tuned", "tuned_s", fmt_time), ("speed-up", "speedup", lambda v: fmt_num(v, ".2f") + "×")]),
        "speedup_json": _table(tu["speedup_json"], [
            ("source", "source", None), ("GPU", "gpu", None), ("impl", "impl", None), ("dtype", "dtype", None),
            ("coupling", "coupling", None), ("shape bucket", "bucket", None), ("pass", "mode", None),
            ("default", "default_s", fmt_time), ("tuned", "tuned_s", fmt_time),
            ("speed-up", "speedup", lambda v: fmt_num(v, ".2f") + "×"), ("tuned config", "config", None)]),
        "dispatch_store": _table(tu["dispatch_store"], [
            ("platform", "platform", None), ("dtype", "dtype", None), ("mode", "mode", None), ("N", "n", fmt_n),
            ("B", "batch", fmt_int), ("auto chose", "impl", None), ("status", "status", None),
            ("time", "time_s", fmt_time)]),
        "dispatch_json": _table(tu["dispatch_json"], [
            ("source", "source", None), ("N", "n", fmt_n), ("B", "batch", fmt_int), ("dtype", "dtype", None),
            ("impl", "impl", None), ("reason", "reason", None)]),
        "measured_best": _table(tu["measured_best"], [
            ("platform", "platform", None), ("dtype", "dtype", None), ("mode", "mode", None), ("N", "n", fmt_n),
            ("B", "batch", fmt_int), ("fastest", "impl", None), ("variant", "variant", None),
            ("time", "time_s", fmt_time), ("implementations measured", "candidates", None)])}
    x["any_tuning"] = any(x[k]["n"] for k in ("speedup_store", "speedup_json", "dispatch_store", "dispatch_json"))
    return x


def _comparison(an: Analysis) -> dict[str, Any] | None:
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
    cases = _table(c["cases"], [
        ("kind", "kind", None), ("impl", "impl", None), ("variant", "variant", None), ("dtype", "dtype", short_dtype),
        ("mode", "mode", None), ("N", "n", fmt_n), ("B", "batch", fmt_int), ("d", "d", fmt_int),
        ("s", "sparsity", lambda v: fmt_num(v, "g")), (f"run {a['run']}", "time_a", fmt_time),
        (f"run {b['run']}", "time_b", fmt_time), ("ratio B/A", "ratio", lambda v: fmt_num(v, ".3f")),
        ("95 % CI", "ratio_lo", None), ("p (Mann–Whitney)", "p", lambda v: fmt_num(v, ".2g")),
        ("q (BH)", "q", lambda v: fmt_num(v, ".2g")), ("verdict", "verdict", None), ("method", "method", None)])
    if len(c["cases"]):
        for row, (_, r) in zip(cases["rows"], c["cases"].iterrows()):
            row[12] = (f"{r['ratio_lo']:.3f}–{r['ratio_hi']:.3f}" if _finite(r["ratio_lo"]) and _finite(r["ratio_hi"])
                       else "—")
    changes = _table(c["status_changes"], [("case", "case_id", None), (f"status in {a['run']}", "status_a", None),
                                           (f"status in {b['run']}", "status_b", None),
                                           (f"reason in {a['run']}", "reason_a", None),
                                           (f"reason in {b['run']}", "reason_b", None)])
    return {"a": a["run"], "b": b["run"], "a_label": _run_title(a), "b_label": _run_title(b), "summary": summary,
            "cases": cases, "changes": changes, "only_a": c["only_a"], "only_b": c["only_b"]}


def _failures(an: Analysis) -> dict[str, Any]:
    t = _table(an.failures, [
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


def _run_title(r: dict[str, Any]) -> str:
    bits = [f"run {r['run']}", r.get("suite") or "", r.get("gpu") or r.get("device") or "",
            (r.get("git_sha") or "")[:12], r.get("label") or ""]
    return " · ".join(b for b in bits if b)


def _environment(an: Analysis) -> list[dict[str, Any]]:
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
        out.append({"title": _run_title(r), "fields": items,
                    "json": json.dumps(env, indent=1, sort_keys=True, default=str)})
    return out


def _synthetic(an: Analysis) -> bool:
    for r in an.loaded.runs + list(an.compare_runs):
        text = " ".join(str(x) for x in (r.get("label"), r.get("gpu"), (r.get("env") or {}).get("note")))
        if "synthetic" in text.lower():
            return True
    return False


# -- page ----------------------------------------------------------------------------------------------------------


def _figure_context(figs: dict[str, list[plots.Figure]]) -> dict[str, list[dict[str, str]]]:
    return {sec: [{"src": f"figures/{f.file}", "title": f.title, "caption": f.caption} for f in lst]
            for sec, lst in figs.items()}


def _drop_column(obj: Any, header: str) -> None:
    """Remove the column titled ``header`` from every table dict (``head``/``rows``) nested in ``obj``."""
    if isinstance(obj, dict):
        if "head" in obj and "rows" in obj and header in obj["head"]:
            i = obj["head"].index(header)
            obj["head"] = obj["head"][:i] + obj["head"][i + 1:]
            obj["rows"] = [row[:i] + row[i + 1:] for row in obj["rows"]]
        for v in obj.values():
            _drop_column(v, header)
    elif isinstance(obj, list):
        for v in obj:
            _drop_column(v, header)


def write_csvs(an: Analysis, data_dir: Path) -> list[str]:
    """Write the computed tables as CSV (stale ones from an earlier report in the same place are removed);
    returns the file names written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("*.csv"):
        old.unlink()
    written = []
    tables = {"fits.csv": an.fits, "crossovers.csv": an.crossover_df, "oom.csv": an.oom,
              "failures.csv": an.failures.drop(columns=["samples_json"], errors="ignore"),
              "roofline.csv": an.roofline, "pareto_points.csv": an.pareto["points"], "sparsity.csv": an.sparsity,
              "usercall.csv": usercall.overhead_rows(an.loaded.df)}
    if an.comparison is not None:
        tables["comparison.csv"] = an.comparison["cases"]
    for name, df in tables.items():
        if df is not None and len(df):
            df.to_csv(data_dir / name, index=False)
            written.append(name)
    return written


def _hashed_name(path: Path) -> str:
    """``stem-<10 hex digits of the content's SHA-256><suffix>``: a new figure never overwrites one that the
    published page still links, and an unchanged figure keeps its name."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return f"{path.stem}-{digest}{path.suffix}"


def render(an: Analysis, out_dir: str | Path, *, title: str = "bkbench report", embed: bool = False,
           sources: list[str] | None = None) -> Path:
    """Write figures, CSV tables and ``index.html`` into ``out_dir``; returns the path of ``index.html``.
    Crash-safe (module docstring): the page being replaced stays complete until the new one is in place."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".render-", dir=out))
    try:
        return _render_staged(an, out, stage, title=title, embed=embed, sources=sources)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _render_staged(an: Analysis, out: Path, stage: Path, *, title: str, embed: bool,
                   sources: list[str] | None) -> Path:
    figs = plots.make_all(an, stage / "figures")
    csvs = write_csvs(an, stage / "data")
    fig_ctx = _figure_context(figs)
    final: dict[str, str] = {}  # staged figures/<file> -> published figures/<hashed file>
    for lst in fig_ctx.values():
        for f in lst:
            staged = stage / f["src"]
            if embed:
                f["src"] = "data:image/png;base64," + base64.b64encode(staged.read_bytes()).decode("ascii")
            else:
                final[f["src"]] = f["src"] = f"figures/{_hashed_name(staged)}"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    tmpl = env.get_template("report.html.j2")
    from bkbench import __version__

    ctx = {
        "title": title,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "sources": sources or sorted({r["db"] for r in an.loaded.runs}),
        "runs": [_run_title(r) for r in an.loaded.runs],
        "synthetic": _synthetic(an),
        "notes": an.loaded.notes + usercall.notes(an.loaded.df) + ([] if an.facts else [
            "The implementation registry could not be imported: exactness of implementations is unknown, so "
            "approximate implementations may appear among the headline candidates."]),
        "n_rows": len(an.loaded.df),
        "headline": _headline(an),
        "fit_rule": an.fit_rule,
        "fits": _fits(an),
        "crossovers": _crossover_matrices(an),
        "oom": _oom(an),
        "roofline": _roofline(an),
        "usercall": _usercall(an),
        "energy": _energy(an),
        "energy_missing": _table(an.energy_missing, [("energy status", "energy_status", None),
                                                     ("cases", "cases", None)]),
        "pareto": _pareto(an),
        "sparsity": _sparsity(an),
        "tuning": _tuning(an),
        "comparison": _comparison(an),
        "failures": _failures(an),
        "environment": _environment(an),
        "figs": fig_ctx,
        "csvs": csvs,
        "embed": embed,
        "reps": an.reps,
    }
    platforms = set(an.loaded.df["platform"]) if len(an.loaded.df) else set()
    if len(platforms) <= 1:  # one platform: say it once (environment), not on every table row
        _drop_column(ctx, "platform")
    if an.fits["timing_mode"].nunique() <= 1 if len(an.fits) else True:
        _drop_column(ctx, "timing")
    page = tmpl.render(**ctx)
    (stage / "index.html").write_text(page, encoding="utf-8")
    # publish: figures under new names and the tables first, the page last, then what the new page no longer links
    fig_dir, data_dir = out / "figures", out / "data"
    if final:
        fig_dir.mkdir(exist_ok=True)
    for lst in figs.values():
        for f in lst:
            src = f"figures/{f.file}"
            if src in final:
                os.replace(stage / src, out / final[src])
    data_dir.mkdir(exist_ok=True)
    for name in csvs:
        os.replace(stage / "data" / name, data_dir / name)
    index = out / "index.html"
    os.replace(stage / "index.html", index)
    linked = {Path(v).name for v in final.values()}
    if fig_dir.exists():
        for old in fig_dir.glob("*.png"):
            if old.name not in linked:
                old.unlink()
        if not any(fig_dir.iterdir()):
            fig_dir.rmdir()
    for old in data_dir.glob("*.csv"):
        if old.name not in csvs:
            old.unlink()
    for left in out.glob(".render-*"):  # staging directories of renders killed long ago
        if left != stage and left.is_dir() and _dt.datetime.now().timestamp() - left.stat().st_mtime > 3600:
            shutil.rmtree(left, ignore_errors=True)
    return index

