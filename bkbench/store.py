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

Every run has a ``uid`` (random, given when it starts), so the same run is recognised in copies of a database:
:meth:`Store.merge_from` (``bkbench merge``) copies the runs and rows of another store, skipping rows it holds
already and reporting — never overwriting — rows that differ (:class:`MergeReport`); merging twice changes
nothing. A file that is not a readable SQLite database raises :class:`StoreError` (a ``ValueError`` that names
the file and what to do) when it is opened.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    # where it ran and what compiling it cost (bkbench.harness.pool, bkbench.harness.warm)
    "host": "TEXT",
    "gpu_name": "TEXT",
    "gpu_index": "TEXT",  # CUDA_VISIBLE_DEVICES of the worker (physical id or UUID)
    "compile_s": "REAL",  # warm-up call (compile + autotune + one call), else the timed worker's first call
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
    "uid": "TEXT",  # the same run in every copy of a database (bkbench merge)
}
# result columns that are not part of a row's content when two copies of a row are compared
NOT_CONTENT = ("id", "run_id")


def default_path() -> Path:
    return Path(os.environ.get("BKBENCH_DB", "results/bkbench.db"))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- identity of runs across copies, for merging ---------------------------------------------------------------
def run_key(run: dict[str, Any]) -> str:
    """A run's identity across copies of a database: its ``uid``; for a run stored before uids existed, a hash
    of what it was started with (suite, device, start time, label, environment and configuration)."""
    if run.get("uid"):
        return str(run["uid"])
    text = json.dumps([run.get(k) for k in ("suite", "device", "started", "label", "env_json", "config_json")])
    return "legacy-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _same_value(a: Any, b: Any) -> bool:
    """Equal as stored values; NaN equals NaN (a copied row is the same row)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


@dataclass
class MergeReport:
    """What :meth:`Store.merge_from` did: runs added, rows added, identical rows skipped, and the
    conflicts (same run and case, different content; the destination's row is kept)."""

    runs_added: int = 0
    rows_added: int = 0
    rows_same: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def read_rows_after(path: str | Path, after_id: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The rows of the store at ``path`` whose id is greater than ``after_id`` (id order) and the environment
    header of its first run: how the executor driver reads a job's store while the job writes it. A store that
    does not exist yet, or is busy right now, gives ``([], None)`` (read it again later). Nothing is written,
    except that SQLite rolls back a transaction a killed writer left behind."""
    path = Path(path)
    if not path.is_file():
        return [], None
    try:
        conn = sqlite3.connect(path, timeout=5)
    except sqlite3.OperationalError:
        return [], None
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute("SELECT * FROM results WHERE id > ? ORDER BY id", (after_id,))]
        run = conn.execute("SELECT env_json FROM runs ORDER BY id LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # locked, or the job has not created its tables yet
        return [], None
    finally:
        conn.close()
    return rows, (json.loads(run["env_json"] or "{}") if run else None)


class StoreError(ValueError):
    """A results database that cannot be used: not SQLite, corrupt, or not a bkbench store."""


def unreadable(path: Path, why: object) -> StoreError:
    """The one-line error for a database file that SQLite cannot read (``why``: SQLite's message)."""
    return StoreError(f"db: {path} is not a readable SQLite results database ({why}); it is corrupt or another "
                      "kind of file: pass the right --db, or move this file aside to start a new database there")


def check_readable(conn: sqlite3.Connection, path: Path) -> None:
    """Raise :class:`StoreError` unless ``conn`` reads a sound SQLite file (header, schema and a quick check of
    every page: milliseconds per MB)."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise unreadable(path, exc) from None
    if problems != ["ok"]:
        raise unreadable(path, "; ".join(problems[:3]))


class Store:
    """A results database. Safe to open from several processes (SQLite WAL, short transactions).

    ``journal="delete"`` uses SQLite's rollback journal instead of WAL: for a store on a network file system
    that processes of other hosts read (an executor job's store, :mod:`bkbench.harness.executors`)."""

    def __init__(self, path: str | Path | None = None, journal: str = "wal") -> None:
        if journal not in ("wal", "delete"):
            raise ValueError(f"journal: {journal!r} is not 'wal' or 'delete'")
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=60)
        except sqlite3.DatabaseError as exc:
            raise unreadable(self.path, exc) from None
        self.conn.row_factory = sqlite3.Row
        try:
            check_readable(self.conn, self.path)
            self.conn.execute(f"PRAGMA journal_mode={journal.upper()}")
            self._create()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise unreadable(self.path, exc) from None
        except StoreError:
            self.conn.close()
            raise

    def _create(self) -> None:
        cols = ", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
        cols = ", ".join(f"{k} {v}" for k, v in RESULT_COLUMNS.items())
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols}, "
                          "UNIQUE(run_id, case_id))")
        # columns added by later versions of this schema
        for table, columns in (("runs", RUN_COLUMNS), ("results", RESULT_COLUMNS)):
            have = {r["name"] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in have:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl.split(' REFERENCES')[0]}")
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
            " config_json, uid) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
            (suite, device, _now(), label, env.get("git_sha"), env.get("gpu"), env.get("copy_bandwidth_gbs"),
             json.dumps(env, default=str), json.dumps(config or {}, default=str), uuid.uuid4().hex),
        )
        self.conn.commit()
        return int(cur.lastrowid)

    def reopen_run(self, run_id: int) -> None:
        """Mark a run as running again (``--resume``)."""
        self.conn.execute("UPDATE runs SET status = 'running', finished = NULL WHERE id = ?", (run_id,))
        self.conn.commit()

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
    @staticmethod
    def _columns(run_id: int, row: dict[str, Any]) -> dict[str, Any]:
        """A row as the results table stores it: known columns; unknown keys folded into ``metrics_json``."""
        if row.get("status") not in STATUSES:
            raise ValueError(f"status: {row.get('status')!r} is not one of {STATUSES}")
        known = {k: v for k, v in row.items() if k in RESULT_COLUMNS}
        extra = {k: v for k, v in row.items() if k not in RESULT_COLUMNS and k not in NOT_CONTENT}
        if extra:
            merged = json.loads(known.get("metrics_json") or "{}")
            merged.update(extra)
            known["metrics_json"] = json.dumps(merged, default=str)
        for key in ("options_json", "samples_json", "energy_json", "metrics_json"):
            if key in known and not isinstance(known[key], (str, type(None))):
                known[key] = json.dumps(known[key], default=str)
        known["run_id"] = run_id
        known.setdefault("created", _now())
        return known

    def add_result(self, run_id: int, row: dict[str, Any]) -> None:
        """Insert (or replace) one case's row and commit at once. Unknown keys go to ``metrics_json``."""
        known = self._columns(run_id, row)
        cols = ", ".join(known)
        marks = ", ".join("?" for _ in known)
        self.conn.execute(f"INSERT OR REPLACE INTO results ({cols}) VALUES ({marks})", list(known.values()))
        self.conn.commit()

    def add_result_if_new(self, run_id: int, row: dict[str, Any], commit: bool = True) -> str:
        """Insert one case's row unless the run holds that case already; never replaces a row. Returns
        "added", "same" (the run holds an identical row) or "conflict" (the run holds a different row).
        ``commit=False`` leaves the transaction open (many rows, one commit)."""
        known = self._columns(run_id, row)
        old = self.conn.execute("SELECT * FROM results WHERE run_id = ? AND case_id = ?",
                                (run_id, known.get("case_id"))).fetchone()
        if old is not None:
            same = all(_same_value(old[k], known.get(k)) for k in RESULT_COLUMNS if k not in NOT_CONTENT)
            return "same" if same else "conflict"
        cols = ", ".join(known)
        marks = ", ".join("?" for _ in known)
        self.conn.execute(f"INSERT INTO results ({cols}) VALUES ({marks})", list(known.values()))
        if commit:
            self.conn.commit()
        return "added"

    def results_after(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Rows whose id is greater than ``after_id``, in id order (what an executor job added since)."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM results WHERE id > ? ORDER BY id", (after_id,))]

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

    # -- merging ---------------------------------------------------------------------------------------
    def merge_from(self, src_path: str | Path) -> MergeReport:
        """Copy every run and row of the store at ``src_path`` into this one. A run is matched by
        :func:`run_key`; a row by (run, case_id): identical rows are skipped, a different row is a conflict
        (reported, this store's row kept). The source is opened read-only and never changed."""
        src_path = Path(src_path)
        if not src_path.is_file():
            raise StoreError(f"db: {src_path} does not exist")
        if src_path.resolve() == self.path.resolve():
            raise StoreError(f"db: {src_path} is the destination itself; name another database to merge")
        try:
            src = sqlite3.connect(f"file:{src_path.resolve()}?mode=ro", uri=True, timeout=60)
        except sqlite3.DatabaseError as exc:
            raise unreadable(src_path, exc) from None
        src.row_factory = sqlite3.Row
        report = MergeReport()
        try:
            check_readable(src, src_path)
            tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"runs", "results"} <= tables:
                raise StoreError(f"db: {src_path} is not a bkbench results database (it has no runs/results tables)")
            mine = {run_key(r): int(r["id"]) for r in self.runs()}
            for run in (dict(r) for r in src.execute("SELECT * FROM runs ORDER BY id")):
                key = run_key(run)
                if key not in mine:
                    cols = {k: run.get(k) for k in RUN_COLUMNS if k != "id"} | {"uid": key}
                    cur = self.conn.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES "
                                            f"({', '.join('?' for _ in cols)})", list(cols.values()))
                    self.conn.commit()
                    mine[key] = int(cur.lastrowid)
                    report.runs_added += 1
                for row in src.execute("SELECT * FROM results WHERE run_id = ? ORDER BY id", (run["id"],)):
                    row = {k: v for k, v in dict(row).items() if k in RESULT_COLUMNS and k not in NOT_CONTENT}
                    outcome = self.add_result_if_new(mine[key], row, commit=False)
                    if outcome == "added":
                        report.rows_added += 1
                    elif outcome == "same":
                        report.rows_same += 1
                    else:
                        report.conflicts.append({"run_uid": key, "run_id": mine[key], "case_id": row.get("case_id"),
                                                 "source": str(src_path)})
                self.conn.commit()
        except sqlite3.DatabaseError as exc:
            raise unreadable(src_path, exc) from None
        finally:
            src.close()
        return report

    # -- read-only access (the report) ---------------------------------------------------------------------------
    @classmethod
    def open_readonly(cls, path: str | Path) -> tuple[Store, Path | None]:
        """A store on ``path`` whose connection is read-only (URI ``mode=ro``): no table is created or altered,
        nothing is written. A file that is not a readable database raises :class:`StoreError`; one without the
        ``runs`` and ``results`` tables a ``ValueError``.

        Returns the store and a temporary directory to delete after :meth:`close`: None, unless the file's
        directory does not allow SQLite's read-only WAL access, in which case a copy of the file (with its -wal and
        -shm files) in that temporary directory is read."""
        import shutil
        import tempfile

        path = Path(path)
        store = cls.__new__(cls)
        store.path = path
        tmpdir = None
        try:
            conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=60)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.OperationalError):  # not a database at all: say so, no traceback
                raise unreadable(path, exc) from None
            tmpdir = Path(tempfile.mkdtemp(prefix="bkbench-report-"))
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(path) + suffix)
                if src.exists():
                    shutil.copy2(src, tmpdir / (path.name + suffix))
            conn = sqlite3.connect(f"file:{(tmpdir / path.name).resolve()}?mode=ro", uri=True, timeout=60)
        conn.row_factory = sqlite3.Row
        try:
            check_readable(conn, path)
        except ValueError:
            conn.close()
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"runs", "results"} - tables
        if missing:
            conn.close()
            raise ValueError(f"db: {path} is not a bkbench results database (no table {', '.join(sorted(missing))})")
        store.conn = conn
        return store, tmpdir

    # -- read-only access (impl="auto", bkbench.dispatch) --------------------------------------------------------
    @staticmethod
    def bk_forward_rows(path: str | Path) -> list[dict[str, Any]]:
        """The forward BK-core rows (``kind = 'bk'``, ``mode = 'fwd'``) of the store at ``path``, each with its
        run's ``gpu``: impl, n, batch, status, time_median_s, run_id, dtype, mode, device, gpu. The file is opened
        read-only (URI ``mode=ro``; no table is created, nothing is written); a file SQLite cannot read, or one
        without those tables, gives []."""
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT r.impl, r.n, r.batch, r.status, r.time_median_s, r.run_id, r.dtype, r.mode, r.device, "
                "u.gpu FROM results r JOIN runs u ON u.id = r.run_id WHERE r.kind = 'bk' AND r.mode = 'fwd'"
            ).fetchall()
            conn.close()
        except sqlite3.Error:
            return []
        return [dict(r) for r in rows]
