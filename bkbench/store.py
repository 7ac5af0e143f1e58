"""The embedded results store: one SQLite file, committed case by case.

Tables
------
``runs``    one row per suite run: id, suite, device, started/finished (UTC ISO), status
            (running / finished / interrupted), the environment header as JSON (``env_json``: GPU, driver,
            CUDA, torch, triton, python, git sha, host, date) and the measured copy bandwidth (GB/s, GPU runs).
``results`` one tidy row per (run, case): the case identity (suite, case_key, impl, kind, n, batch, d,
            dtype, sparsity, mode, options_json, device), its ``status`` — ok / incorrect / oom / timeout /
            crash / skipped — with ``reason``, and every metric: accuracy (rel_err, tolerance), time
            (median, p20, p80, iqr, mean, std, n_samples, ci95 half-width, timing mode, raw samples as JSON),
            memory (peak bytes, ideal bytes), throughput (GB/s, % of copy bandwidth), energy (J per call,
            dynamic J per call, J per element, average power, idle power, energy_status) and any other metric
            in ``metrics_json``.

Rows are written with one transaction each (:meth:`Store.add_result`), so a crash loses nothing already
measured. ``(run_id, case_id)`` is unique: resuming a run skips the cases it already holds.
Default location: ``$BKBENCH_DB`` or ``results/bkbench.db`` under the current directory.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STATUSES = ("ok", "incorrect", "oom", "timeout", "crash", "skipped", "implausible")
# final statuses a ``--missing --retry`` run may re-run (a timeout row never holds a case; ok always does)
RETRY_STATUSES = tuple(s for s in STATUSES if s not in ("ok", "timeout"))

RESULT_COLUMNS: dict[str, str] = {
    # identity
    "run_id": "INTEGER NOT NULL REFERENCES runs(id)",
    "case_id": "TEXT NOT NULL",  # unique within a run: impl + case_key + mode + options
    "suite": "TEXT",
    "case_key": "TEXT",
    "impl": "TEXT",
    "kind": "TEXT",
    "n": "INTEGER",
    "batch": "INTEGER",
    "d": "INTEGER",
    "dtype": "TEXT",
    "sparsity": "REAL",
    "mode": "TEXT",  # fwd | fwd+bwd
    "options_json": "TEXT",
    "device": "TEXT",
    "status": "TEXT NOT NULL",
    "reason": "TEXT",
    # accuracy
    "rel_err": "REAL",
    "tolerance": "REAL",
    # time (seconds)
    "timing_mode": "TEXT",  # cold | warm | graph | cpu
    "time_median_s": "REAL",
    "time_p20_s": "REAL",
    "time_p80_s": "REAL",
    "time_iqr_s": "REAL",
    "time_mean_s": "REAL",
    "time_std_s": "REAL",
    "time_ci95_s": "REAL",
    "n_samples": "INTEGER",
    "samples_json": "TEXT",
    # memory and throughput
    "peak_mem_bytes": "INTEGER",
    "ideal_bytes": "INTEGER",
    "flops": "REAL",
    "gbps": "REAL",
    "roofline_pct": "REAL",
    # energy
    "energy_j_per_call": "REAL",
    "energy_dynamic_j_per_call": "REAL",
    "energy_j_per_element": "REAL",
    "power_avg_w": "REAL",
    "power_idle_w": "REAL",
    "energy_status": "TEXT",
    "energy_json": "TEXT",
    # everything else
    "metrics_json": "TEXT",
    "wall_s": "REAL",
    "created": "TEXT",
}

RUN_COLUMNS: dict[str, str] = {
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "suite": "TEXT",
    "device": "TEXT",
    "started": "TEXT",
    "finished": "TEXT",
    "status": "TEXT",
    "label": "TEXT",
    "git_sha": "TEXT",
    "gpu": "TEXT",
    "copy_bandwidth_gbs": "REAL",
    "env_json": "TEXT",
    "config_json": "TEXT",
}


def default_path() -> Path:
    return Path(os.environ.get("BKBENCH_DB", "results/bkbench.db"))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Store:
    """A results database. Safe to open from several processes (SQLite WAL, short transactions)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self._create()

    def _create(self) -> None:
        cols = ", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
        cols = ", ".join(f"{k} {v}" for k, v in RESULT_COLUMNS.items())
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols}, "
                          "UNIQUE(run_id, case_id))")
        # columns added by later versions of this schema
        have = {r["name"] for r in self.conn.execute("PRAGMA table_info(results)")}
        for name, decl in RESULT_COLUMNS.items():
            if name not in have:
                self.conn.execute(f"ALTER TABLE results ADD COLUMN {name} {decl.split(' REFERENCES')[0]}")
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------------------
    def start_run(self, suite: str, device: str, env: dict[str, Any], config: dict[str, Any] | None = None,
                  label: str = "") -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (suite, device, started, status, label, git_sha, gpu, copy_bandwidth_gbs, env_json,"
            " config_json) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
            (suite, device, _now(), label, env.get("git_sha"), env.get("gpu"), env.get("copy_bandwidth_gbs"),
             json.dumps(env, default=str), json.dumps(config or {}, default=str)),
        )
        self.conn.commit()
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str = "finished") -> None:
        self.conn.execute("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (_now(), status, run_id))
        self.conn.commit()

    def update_run_env(self, run_id: int, env: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE runs SET env_json = ?, copy_bandwidth_gbs = ?, gpu = ? WHERE id = ?",
            (json.dumps(env, default=str), env.get("copy_bandwidth_gbs"), env.get("gpu"), run_id),
        )
        self.conn.commit()

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY id")]

    def run(self, run_id: int) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise ValueError(f"run: no run with id {run_id} in {self.path}")
        return dict(row)

    def latest_run(self, suite: str | None = None, device: str | None = None) -> dict[str, Any] | None:
        q, args = "SELECT * FROM runs WHERE 1=1", []
        if suite:
            q, args = q + " AND suite = ?", args + [suite]
        if device:
            q, args = q + " AND device = ?", args + [device]
        row = self.conn.execute(q + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return dict(row) if row else None

    # -- results -------------------------------------------------------------------------------------
    def add_result(self, run_id: int, row: dict[str, Any]) -> None:
        """Insert (or replace) one case's row and commit at once. Unknown keys go to ``metrics_json``."""
        if row.get("status") not in STATUSES:
            raise ValueError(f"status: {row.get('status')!r} is not one of {STATUSES}")
        known = {k: v for k, v in row.items() if k in RESULT_COLUMNS}
        extra = {k: v for k, v in row.items() if k not in RESULT_COLUMNS}
        if extra:
            merged = json.loads(known.get("metrics_json") or "{}")
            merged.update(extra)
            known["metrics_json"] = json.dumps(merged, default=str)
        for key in ("options_json", "samples_json", "energy_json", "metrics_json"):
            if key in known and not isinstance(known[key], (str, type(None))):
                known[key] = json.dumps(known[key], default=str)
        known["run_id"] = run_id
        known.setdefault("created", _now())
        cols = ", ".join(known)
        marks = ", ".join("?" for _ in known)
        self.conn.execute(f"INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})", list(known.values()))
        self.conn.commit()

    def done_case_ids(self, run_id: int) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT case_id FROM results WHERE run_id = ?", (run_id,))}

    def stored_case_ids(self, suite: str, device: str, exclude_status: Iterable[str] = ("timeout",)) -> set[str]:
        """Case ids that any run of ``suite`` on ``device`` holds a row for, except rows whose status is in
        ``exclude_status`` (by default a timeout, so that a longer timeout retries the case)."""
        skip = list(exclude_status)
        marks = ", ".join("?" for _ in skip) or "NULL"
        rows = self.conn.execute(
            "SELECT DISTINCT r.case_id FROM results r JOIN runs u ON u.id = r.run_id "
            f"WHERE u.suite = ? AND u.device = ? AND r.status NOT IN ({marks})", (suite, device, *skip))
        return {r[0] for r in rows}

    def results(self, run_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        if run_ids is None:
            rows = self.conn.execute("SELECT * FROM results ORDER BY id")
        else:
            ids = list(run_ids)
            marks = ", ".join("?" for _ in ids) or "NULL"
            rows = self.conn.execute(f"SELECT * FROM results WHERE run_id IN ({marks}) ORDER BY id", ids)
        return [dict(r) for r in rows]

    def dataframe(self, run_ids: Iterable[int] | None = None):  # -> pandas.DataFrame
        """Results joined with their run's suite/device/gpu/git sha/copy bandwidth, as a pandas DataFrame."""
        import pandas as pd

        df = pd.DataFrame(self.results(run_ids), columns=["id", *RESULT_COLUMNS])
        runs = pd.DataFrame(self.runs(), columns=list(RUN_COLUMNS))
        runs = runs.rename(columns={"id": "run_id", "suite": "run_suite", "device": "run_device",
                                    "status": "run_status"})
        return df.merge(runs[["run_id", "run_suite", "run_device", "gpu", "git_sha", "copy_bandwidth_gbs",
                              "run_status", "label"]], on="run_id", how="left")

    def export_csv(self, path: str | Path, run_ids: Iterable[int] | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dataframe(run_ids).to_csv(path, index=False)
        return path
