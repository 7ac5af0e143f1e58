"""Loading results databases for the report, read-only, into one normalised pandas DataFrame.

The frame has every column of :data:`bkbench.store.RESULT_COLUMNS` (missing ones — an older schema — are
filled with NaN/None), the run columns :meth:`bkbench.store.Store.dataframe` joins in, and these derived
columns:

``run``        a run's name in this report: ``"7"`` for one database, ``"<db stem>:7"`` for several;
``db``         the database file the row came from;
``platform``   the GPU name of the run, else the row's device (``"cpu"``);
``variant``    ``options_json`` written compactly (``"window=8"``, ``"gauss=table"``; ``""`` for none);
``label``      ``impl`` plus the variant in brackets (the run's own label is ``run_label``);
``tuning_config`` the ``config`` option (``"default"`` / ``"tuned"``) of autotuning comparison rows, else None
               (such rows feed the autotuning section only);
``group``      the suite group the case came from (``metrics_json["group"]``; ``""`` when not recorded);
``elements``   B·d·N (``metrics_json["elements"]`` when the runner stored it, else batch × (d or 1) × n);
``tokens``     batch × n;
``time_s``     ``time_median_s`` for ok rows, NaN otherwise (no speed is ever shown for a failed case);
``gbps_eff``   stored ``gbps``, else ideal_bytes / time_s;
``roof_pct``   stored ``roofline_pct``, else gbps_eff / run copy bandwidth × 100;
``timed``, ``kernel_time_s``, ``kernel_gbps_eff``, ``kernel_roof_pct``  which BK-core number the row's time is
               (user call or bare kernel) and the bare kernel's own timing (:mod:`bkbench.harness.report.usercall`).

The databases are opened read-only (:meth:`bkbench.store.Store.open_readonly`): a committed database is
never modified. The row fields are decoded by :mod:`bkbench.harness.report.fields`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bkbench.harness.report import usercall
from bkbench.harness.report.fields import parse_json, variant_of
from bkbench.store import RESULT_COLUMNS, RUN_COLUMNS, STATUSES, Store

NUMERIC = [
    "n", "batch", "d", "sparsity", "rel_err", "tolerance", "time_median_s", "time_p20_s", "time_p80_s",
    "time_iqr_s", "time_mean_s", "time_std_s", "time_ci95_s", "n_samples", "peak_mem_bytes", "ideal_bytes",
    "flops", "gbps", "roofline_pct", "energy_j_per_call", "energy_dynamic_j_per_call", "energy_j_per_element",
    "power_avg_w", "power_idle_w", "wall_s", "copy_bandwidth_gbs",
]


@dataclass
class Loaded:
    """Results of one or more databases.

    Attributes:
        df: the normalised frame described in the module docstring (selected runs only, de-duplicated).
        runs: one dict per selected run (the ``runs`` row plus ``run``, ``db`` and the parsed ``env``).
        all_runs: names of every run found, selected or not.
        notes: plain-language remarks about the data (duplicates dropped, unknown statuses...).
        stored: rows each selected run holds before de-duplication ({run name: count}).
    """

    df: pd.DataFrame
    runs: list[dict[str, Any]]
    all_runs: list[str]
    notes: list[str] = field(default_factory=list)
    stored: dict[str, int] = field(default_factory=dict)


def _ensure_columns(df: pd.DataFrame) -> pd.DataFrame:
    for col in [*RESULT_COLUMNS, "copy_bandwidth_gbs", "run_suite", "run_device", "gpu", "git_sha",
                "run_status", "run_label"]:
        if col not in df.columns:
            df[col] = None
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def _text(col: pd.Series, default: str) -> pd.Series:
    """A text column with missing values replaced by ``default`` (works for all-NaN float columns too)."""
    return col.astype(object).where(col.notna(), default).astype(str)


def _derive(df: pd.DataFrame) -> pd.DataFrame:
    df["status"] = _text(df["status"], "crash")
    df["impl"] = _text(df["impl"], "?")
    df["kind"] = _text(df["kind"], "bk")
    df["mode"] = _text(df["mode"], "fwd")
    df["dtype"] = _text(df["dtype"], "?")
    df["sparsity"] = df["sparsity"].fillna(0.0)
    df["timing_mode"] = _text(df["timing_mode"], "")
    gpu = df["gpu"].where(df["gpu"].notna() & (df["gpu"].astype(str) != ""), None)
    dev = _text(df["device"].astype(object).where(df["device"].notna(), df["run_device"]), "?")
    on_gpu = dev.str.startswith("cuda")
    df["platform"] = np.where(on_gpu & gpu.notna(), gpu.astype(str), dev)
    df["variant"] = df["options_json"].map(variant_of)
    opts = df["options_json"].map(parse_json)
    df["tuning_config"] = opts.map(lambda o: str(o["config"]) if isinstance(o, dict) and "config" in o else None)
    df["label"] = [f"{i} [{v}]" if v else i for i, v in zip(df["impl"], df["variant"])]
    metrics = df["metrics_json"].map(parse_json)
    df["group"] = metrics.map(lambda m: str(m.get("group") or "") if isinstance(m, dict) else "")
    stored_el = metrics.map(lambda m: m.get("elements") if isinstance(m, dict) else None)
    stored_el = pd.to_numeric(stored_el, errors="coerce").astype(float)
    d = df["d"].fillna(1.0)
    df["elements"] = stored_el.fillna(df["batch"] * d * df["n"])
    df["tokens"] = df["batch"] * df["n"]
    ok = (df["status"] == "ok") & np.isfinite(df["time_median_s"]) & (df["time_median_s"] > 0)
    df["time_s"] = df["time_median_s"].where(ok)
    gbps = df["gbps"].where(np.isfinite(df["gbps"]) & ok)
    df["gbps_eff"] = gbps.fillna(df["ideal_bytes"] / df["time_s"] / 1e9)
    roof = df["roofline_pct"].where(np.isfinite(df["roofline_pct"]) & ok)
    df["roof_pct"] = roof.fillna(df["gbps_eff"] / df["copy_bandwidth_gbs"] * 100.0)
    return usercall.derive(df)


def _read(db_paths: list[str | Path]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every row and run of ``db_paths`` (read-only), normalised, not yet selected or de-duplicated."""
    if not db_paths:
        raise ValueError("db: give at least one results database (--db PATH)")
    paths = [Path(p) for p in db_paths]
    for p in paths:
        if not p.is_file():
            raise ValueError(f"db: {p} does not exist; run `bkbench run SUITE --db {p}` first or pass another --db")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        stems = [f"{i}-{s}" for i, s in enumerate(stems)]
    frames, runs = [], []
    for path, stem in zip(paths, stems):
        store, tmpdir = Store.open_readonly(path)
        try:
            df = store.dataframe().rename(columns={"label": "run_label"})
            run_rows = store.runs()
        finally:
            store.close()
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
        prefix = f"{stem}:" if len(paths) > 1 else ""
        df["run"] = [f"{prefix}{int(r)}" if pd.notna(r) else f"{prefix}?" for r in df["run_id"]]
        df["db"] = str(path)
        frames.append(df)
        for r in run_rows:
            r = {k: r.get(k) for k in RUN_COLUMNS} | {"run": f"{prefix}{r['id']}", "db": str(path)}
            r["env"] = parse_json(r.get("env_json")) or {}
            r["config"] = parse_json(r.get("config_json")) or {}
            runs.append(r)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return _derive(_ensure_columns(df)), runs


def load(db_paths: list[str | Path], run_ids: list[str] | None = None) -> Loaded:
    """Read ``db_paths`` (read-only) and keep the runs named in ``run_ids`` (all when None).

    Run names are ``"ID"`` with one database, ``"<stem>:ID"`` with several (a bare ``"ID"`` is accepted
    when only one database has such a run). A case measured in several selected runs (same platform, impl,
    case id) keeps its latest run's row; the report notes how many were dropped.
    """
    df, runs = _read(db_paths)
    notes: list[str] = []
    all_names = [r["run"] for r in runs]
    selected = resolve_runs(run_ids, all_names) if run_ids else all_names
    df = df[df["run"].isin(selected)].copy()
    stored = df["run"].value_counts().to_dict()
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        notes.append(f"unknown status value(s) {bad} shown as they are")
    order = {name: i for i, name in enumerate(selected)}
    df["_run_order"] = df["run"].map(order)
    df["_case"] = df["platform"].astype(str) + "|" + case_ids(df)
    before = len(df)
    df = df.sort_values(["_run_order", "id"]).drop_duplicates("_case", keep="last")
    if len(df) < before:
        notes.append(f"{before - len(df)} case(s) measured in more than one selected run: the latest run's row is "
                     "used")
    df = df.drop(columns=["_run_order", "_case"]).reset_index(drop=True)
    sel_runs = [r for r in runs if r["run"] in selected]
    sel_runs.sort(key=lambda r: order[r["run"]])
    return Loaded(df=df, runs=sel_runs, all_runs=all_names, notes=notes, stored={str(k): int(v) for k, v in
                                                                                 stored.items()})


def case_ids(df: pd.DataFrame) -> pd.Series:
    """The stored ``case_id`` of each row, or — where it is missing — the row's identity columns joined
    (impl, case_key, mode, options_json, n, batch, d, dtype, sparsity)."""
    cols = ["impl", "case_key", "mode", "options_json", "n", "batch", "d", "dtype", "sparsity"]
    fallback = df[cols].map(str).agg("|".join, axis=1) if len(df) else pd.Series(dtype=str)
    cid = df["case_id"]
    return cid.where(cid.notna() & (cid.astype(str) != ""), fallback).astype(str)


def resolve_runs(names: list[str], known: list[str]) -> list[str]:
    """Map user-given run names (``"7"`` or ``"db:7"``) to known run names, in the given order."""
    out = []
    for name in names:
        name = str(name).strip()
        if name in known:
            out.append(name)
            continue
        hits = [k for k in known if k.split(":")[-1] == name]
        if len(hits) == 1:
            out.append(hits[0])
        elif not hits:
            raise ValueError(f"run: no run named {name!r}; known runs: {', '.join(known) or '(none)'}")
        else:
            raise ValueError(f"run: {name!r} is ambiguous ({', '.join(hits)}); write it as DBSTEM:ID")
    return out


def load_pair(db_paths: list[str | Path], run_a: str, run_b: str) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Every row of run A and of run B (no de-duplication across runs), and the two runs' records."""
    df, runs = _read(db_paths)
    names = [r["run"] for r in runs]
    a, b = resolve_runs([run_a, run_b], names)
    if a == b:
        raise ValueError(f"compare: RUN_A and RUN_B are the same run ({a}); name two different runs")
    recs = [next(r for r in runs if r["run"] == x) for x in (a, b)]
    return df[df["run"] == a].copy(), df[df["run"] == b].copy(), recs
