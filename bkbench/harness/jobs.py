"""One executor job: a share of a run's cases, run by the usual worker loop into a store in the job's folder.

The driver (:mod:`bkbench.harness.executors`) writes a :class:`JobSpec` per job and submits :class:`SuiteJob` through
submitit; the job (on this host or a SLURM node) calls :func:`run_job`. Its folder holds::

    job.json       the JobSpec (cases, device, plugins, warm-up, compile columns from the driver's warm-up)
    results.db     the job's own store (one run; SQLite rollback journal, readable over NFS)
    lock           held (flock) while the job runs: the driver's way to tell a running job from a dead one
    pid            the process id and host of the job's last start
    superseded     written by a resuming driver that gave the job's cases to new jobs: the job must not start
    outcome.json   written when the job ends: cases, rows stored, finished or not
    logs/          worker logs;   submitit/   submitit's pickles, stdout and stderr

A job skips the cases its store holds, so a job that is requeued (SLURM preemption or time limit:
:class:`SuiteJob` is ``submitit.helpers.Checkpointable``) or run again continues where it stopped. Only the
driver writes the main database; it merges the job stores' rows as they arrive.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bkbench.harness.suites import CaseSpec

try:
    from submitit.helpers import Checkpointable
except ImportError:  # submitit is optional (bkbench[cluster]); bkbench.harness.executors says how to install it
    Checkpointable = object

LOCK_WAIT_S = 300.0  # a requeued job waits this long for a lock its previous instance may still hold (NFS)


@dataclass
class JobSpec:
    """Everything a job needs. ``cases``: CaseSpec dicts; ``compile_columns``: {case_id: columns} from a
    warm-up the driver ran (local executor); ``warm``: warm up inside the job (SLURM: the job's node)."""

    name: str
    folder: str
    suite: str
    device: str
    cases: list[dict[str, Any]]
    plugins: list[str] = field(default_factory=list)
    warm: bool = False
    warm_jobs: int | None = None
    compile_columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    main_db: str = ""
    main_run: int = 0

    def case_specs(self) -> list[CaseSpec]:
        return [CaseSpec.from_dict(d) for d in self.cases]

    def write(self) -> None:
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "job.json").write_text(json.dumps(asdict(self), indent=1, default=str))

    @classmethod
    def read(cls, folder: str | Path) -> JobSpec:
        return cls(**json.loads((Path(folder) / "job.json").read_text()))


def store_path(folder: str | Path) -> Path:
    return Path(folder) / "results.db"


def read_outcome(folder: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / "outcome.json").read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def held_lock(folder: str | Path, wait_s: float = 0.0) -> Iterator[bool]:
    """Hold the job folder's lock while inside (yields True), or yield False when another process holds it
    for longer than ``wait_s``."""
    fd = os.open(Path(folder) / "lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        got = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_running(folder: str | Path) -> bool:
    """True while a job process holds the folder's lock (it is running its cases)."""
    if not (Path(folder) / "lock").exists():
        return False
    with held_lock(folder) as got:
        return not got


def supersede(folder: str | Path) -> bool:
    """Stop a job from ever starting (its cases go to new jobs): returns False, and leaves it alone, when it is
    running now. The marker is written before the lock is tested and a job tests the marker after taking the
    lock, so a job is either running (and kept) or never runs."""
    marker = Path(folder) / "superseded"
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    if is_running(folder):
        marker.unlink(missing_ok=True)
        return False
    return True


def visible_gpus() -> list[str]:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (what SLURM or the local executor gave this job), in order."""
    return [x.strip() for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]


def run_job(spec: JobSpec) -> dict[str, Any]:
    """Run the job's cases that its store does not hold yet (inside the job process). Returns the outcome
    (also written to ``outcome.json``): ``status`` finished / superseded / locked, cases, stored."""
    folder = Path(spec.folder)
    folder.mkdir(parents=True, exist_ok=True)
    with held_lock(folder, LOCK_WAIT_S) as got:
        if not got:
            return {"job": spec.name, "status": "locked", "detail": f"another process holds {folder / 'lock'}"}
        if (folder / "superseded").exists():
            return {"job": spec.name, "status": "superseded"}
        (folder / "pid").write_text(f"{os.getpid()} {socket.gethostname()}\n")  # which process runs it, for a look
        outcome = _run_cases(spec, folder)
        (folder / "outcome.json").write_text(json.dumps(outcome))
        return outcome


def _run_cases(spec: JobSpec, folder: Path) -> dict[str, Any]:
    from bkbench.harness.pool import WorkerHandle, drive
    from bkbench.harness.warm import compile_columns, needs_warm, warm, with_compile_columns
    from bkbench.store import Store

    cases = spec.case_specs()
    store = Store(store_path(folder), journal="delete")
    runs = store.runs()
    if runs:
        run_id = int(runs[0]["id"])
        store.reopen_run(run_id)
    else:
        run_id = store.start_run(spec.suite, spec.device, {}, {"job": spec.name, "main_db": spec.main_db,
                                                               "main_run": spec.main_run})
    done = store.done_case_ids(run_id)
    todo = [c for c in cases if c.case_id not in done]
    gpus = visible_gpus() if spec.device == "cuda" else []
    slots: list[str | None] = list(gpus) if len(gpus) > 1 else [None]
    columns = dict(spec.compile_columns)
    finished = False
    workers: list[WorkerHandle] = []
    try:
        if spec.warm and needs_warm(todo):
            columns.update(compile_columns(warm(todo, jobs=spec.warm_jobs, devices=gpus or None,
                                                plugins=spec.plugins, log_dir=folder / "logs")))
        env_stored = False

        def on_env(env: dict[str, Any]) -> None:
            nonlocal env_stored
            if not env_stored and env:
                store.update_run_env(run_id, {**env, "worker_header": True, "job": spec.name})
                env_stored = True

        def on_row(row: dict[str, Any]) -> None:
            row["job"] = spec.name
            store.add_result_if_new(run_id, with_compile_columns(row, columns))

        workers = [WorkerHandle(f"{spec.device}{'' if g is None else g}", spec.device, g, spec.plugins,
                                folder / "logs") for g in slots]
        drive(workers, [[c] for c in todo if not c.skip_reason], on_row, show=False, on_env=on_env)
        for c in todo:
            if c.skip_reason:
                on_row({**c.identity(), "status": "skipped", "reason": c.skip_reason, "wall_s": 0.0})
        finished = True
    finally:
        for w in workers:
            w.stop()
        stored = len(store.done_case_ids(run_id))
        store.finish_run(run_id, "finished" if finished else "interrupted")
        store.close()
    return {"job": spec.name, "status": "finished", "cases": len(cases), "stored": stored}


class SuiteJob(Checkpointable):  # type: ignore[misc, valid-type]
    """The callable submitit runs: ``SuiteJob(spec)()`` -> :func:`run_job` ``(spec)``. As a ``Checkpointable``,
    submitit requeues it after a preemption or time limit and calls it again; :func:`run_job` then skips what
    the job's store holds."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def __call__(self) -> dict[str, Any]:
        return run_job(self.spec)
