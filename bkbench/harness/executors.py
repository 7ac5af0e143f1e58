"""Running a suite as jobs: ``bkbench run ... --executor local|slurm`` (the driver side; the job side is
:mod:`bkbench.harness.jobs`).

The run's cases are grouped into jobs (:func:`group_into_jobs`: a kernel's cases stay together, the groups
balanced by their planned time), each job gets a folder ``<jobs dir>/run-<id>/attempt-<k>/job-<j>/`` and is
submitted through submitit: the ``local`` executor runs one job per GPU of this host at a time (the
:class:`SlotScheduler`; on a CPU host ``--jobs`` jobs at once), the ``slurm`` executor submits every job with
the :class:`SlurmSettings` (partition, GPUs per job, time limit, account, extra sbatch options) and SLURM places
them; a job that is preempted or hits its time limit is requeued by submitit and continues. While jobs run,
the driver merges the rows of their stores into the run of the main database (only the driver writes it),
each row kept with the host, GPU and job it ran on. ``--resume`` first merges what the jobs of earlier attempts
stored, keeps watching those still running, and gives the remaining cases to new jobs.

submitit is optional (``pip install 'bkbench[cluster]'``).
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bkbench.harness.jobs import JobSpec, SuiteJob, is_running, read_outcome, store_path, supersede
from bkbench.harness.suites import CaseSpec, estimate_seconds
from bkbench.harness.warm import kernels
from bkbench.store import Store, read_rows_after

EXECUTORS = ("inline", "local", "slurm")
ROOT = Path(__file__).resolve().parents[2]  # <checkout>/bkbench/harness/executors.py -> <checkout>
POLL_S = 1.0


def require_submitit(executor: str) -> None:
    """ValueError saying how to install submitit when ``executor`` needs it and it is missing."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    if executor == "inline":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ValueError(f"executor: --executor {executor} runs jobs through submitit, which is not installed; "
                         "install it with `pip install 'bkbench[cluster]'` (or `pip install submitit`), or use "
                         "--executor inline") from None


# -- SLURM settings ---------------------------------------------------------------------------------------------
@dataclass
class SlurmSettings:
    """What every SLURM job of a run asks for. ``options``: further sbatch options (``{"qos": "high"}`` ->
    ``#SBATCH --qos=high``); ``setup``: shell lines run before the job (``module load ...``)."""

    partition: str | None = None
    gpus_per_job: int = 1
    time_min: int = 120
    account: str | None = None
    cpus_per_job: int | None = None  # default: 8 per GPU (the warm-up compiles in parallel on them)
    mem_gb: float | None = None
    max_requeue: int = 3
    setup: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("gpus_per_job", "time_min", "max_requeue"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"slurm {name}: {getattr(self, name)!r} must be a whole number >= 0")
        if self.time_min < 1:
            raise ValueError(f"slurm time_min: {self.time_min} must be >= 1 (minutes)")

    def parameters(self, name: str) -> dict[str, Any]:
        """The ``submitit.SlurmExecutor`` parameters of one job."""
        params: dict[str, Any] = {"job_name": name, "time": self.time_min, "nodes": 1, "ntasks_per_node": 1,
                                  "gpus_per_node": self.gpus_per_job,
                                  "cpus_per_task": self.cpus_per_job or 8 * max(1, self.gpus_per_job),
                                  "setup": [*self.setup, _pythonpath_line()], "stderr_to_stdout": True}
        if self.partition:
            params["partition"] = self.partition
        if self.account:
            params["account"] = self.account
        if self.mem_gb:
            params["mem"] = f"{int(self.mem_gb * 1024)}MB"
        if self.options:
            params["additional_parameters"] = dict(self.options)
        return params


SLURM_KEYS = {f for f in SlurmSettings.__dataclass_fields__}


def slurm_settings(config: str | Path | None = None, **flags: Any) -> SlurmSettings:
    """SLURM settings from the ``[slurm]`` table of the TOML file ``config`` (keys as :class:`SlurmSettings`),
    overridden by the ``flags`` that are not None."""
    values: dict[str, Any] = {}
    if config:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"cluster_config: {path} does not exist")
        try:
            table = tomllib.loads(path.read_text()).get("slurm", {})
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"cluster_config: {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(table) - SLURM_KEYS)
        if unknown:
            raise ValueError(f"cluster_config: unknown key(s) {unknown} in [slurm] of {path}; known: "
                             f"{sorted(SLURM_KEYS)}")
        values.update(table)
    for key, value in flags.items():
        if key not in SLURM_KEYS:
            raise ValueError(f"slurm: unknown setting {key!r}; known: {sorted(SLURM_KEYS)}")
        if value is None or value == [] or value == {}:
            continue
        if key == "options":
            values["options"] = {**values.get("options", {}), **value}
        elif key == "setup":
            values["setup"] = [*values.get("setup", []), *value]
        else:
            values[key] = value
    return SlurmSettings(**values)


def _pythonpath_line() -> str:
    """The shell line that lets a job import this checkout of bkbench (and the kernels next to it)."""
    return f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"


# -- grouping and placing jobs ------------------------------------------------------------------------------------
def group_into_jobs(cases: Sequence[CaseSpec], jobs: int) -> list[list[CaseSpec]]:
    """``cases`` dealt into at most ``jobs`` jobs. A kernel's cases (:func:`bkbench.harness.warm.kernels`) stay in one
    job, so its compiled code and autotuning are reused, unless there are fewer kernels than jobs (then the
    largest kernels are split); kernels go, longest planned first, to the job with the least planned time.
    Skipped cases are left out (the driver stores them). Every case is in exactly one job."""
    if jobs < 1:
        raise ValueError(f"jobs: {jobs} must be >= 1")
    units = kernels(cases)
    while len(units) < jobs and any(len(u) > 1 for u in units):
        big = max(units, key=len)
        units.remove(big)
        units += [big[::2], big[1::2]]
    cost = {id(u): estimate_seconds(u) + 1.0 for u in units}
    bins: list[list[CaseSpec]] = [[] for _ in range(min(jobs, len(units)))]
    load = [0.0] * len(bins)
    for u in sorted(units, key=lambda u: -cost[id(u)]):
        i = min(range(len(bins)), key=lambda j: load[j])
        bins[i] += u
        load[i] += cost[id(u)]
    return [b for b in bins if b]


def local_slots(device: str, devices: Sequence[int] | None, jobs: int | None) -> list[int | str | None]:
    """Where the local executor may run jobs at once: one slot per GPU (``devices``, else the entries of
    ``CUDA_VISIBLE_DEVICES``, else every GPU torch counts); on the CPU ``jobs`` slots (default 1)."""
    if device != "cuda":
        return [None] * max(1, jobs or 1)
    if devices:
        return list(devices)
    visible = [x.strip() for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    if visible:
        return [int(x) if x.isdigit() else x for x in visible]
    import torch

    return list(range(torch.cuda.device_count())) or [None]


class SlotScheduler:
    """One job per slot at a time (a GPU is never shared by two jobs), jobs started in the given order."""

    def __init__(self, slots: Sequence[int | str | None], jobs: Sequence[JobSpec]) -> None:
        if not slots:
            raise ValueError("slots: need at least one place to run a job")
        self.slots = list(slots)
        self.pending = list(jobs)
        self.busy: dict[int, JobSpec] = {}  # slot position -> job

    def start(self) -> list[tuple[JobSpec, int | str | None]]:
        """Jobs to start now, each with its slot; marks those slots busy."""
        out = []
        for pos in range(len(self.slots)):
            if pos not in self.busy and self.pending:
                self.busy[pos] = self.pending.pop(0)
                out.append((self.busy[pos], self.slots[pos]))
        return out

    def done(self, job: JobSpec) -> None:
        """``job`` ended: its slot is free."""
        pos = next(p for p, j in self.busy.items() if j is job)
        del self.busy[pos]

    @property
    def finished(self) -> bool:
        return not self.pending and not self.busy


def local_parameters(slot: int | str | None, timeout_min: int) -> dict[str, Any]:
    """``submitit.LocalExecutor`` parameters of a job on ``slot`` (a GPU id, or None on the CPU)."""
    params: dict[str, Any] = {"timeout_min": timeout_min, "gpus_per_node": 0, "setup": [_pythonpath_line()]}
    if isinstance(slot, int):
        params.update(gpus_per_node=1, visible_gpus=[slot])
    elif slot is not None:  # a GPU UUID: submitit takes ids only, so set it in the job's shell
        params["setup"].append(f"export CUDA_VISIBLE_DEVICES={shlex.quote(str(slot))}")
    return params


def submit(kind: str, spec: JobSpec, slot: int | str | None = None, slurm: SlurmSettings | None = None) -> Any:
    """Submit one job through submitit; returns its submitit Job. Its files go to ``<job folder>/submitit``."""
    import submitit

    folder = Path(spec.folder) / "submitit"
    if kind == "local":
        ex: Any = submitit.LocalExecutor(folder=folder, max_num_timeout=3)
        total = sum(c.get("timeout_s", 300.0) for c in spec.cases)
        ex.update_parameters(**local_parameters(slot, math.ceil((total + 600.0) / 60.0)))
    elif kind == "slurm":
        settings = slurm or SlurmSettings()
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=settings.max_requeue)
        ex.update_parameters(**settings.parameters(f"bkbench-{spec.suite}-{Path(spec.folder).name}"))
    else:
        raise ValueError(f"executor: {kind!r} does not submit jobs; use local or slurm")
    return ex.submit(SuiteJob(spec))


# -- the driver ---------------------------------------------------------------------------------------------------
@dataclass
class JobWatch:
    """A job folder the driver merges rows from. ``job``: its submitit Job when this driver submitted it."""

    spec: JobSpec
    job: Any = None
    kind: str = "local"
    last_id: int = 0
    env_seen: bool = False

    @property
    def folder(self) -> Path:
        return Path(self.spec.folder)

    def merge(self, take: Callable[[dict[str, Any]], None], take_env: Callable[[str, dict[str, Any]], None]) -> None:
        """Hand the rows the job stored since the last call to ``take`` (and its worker header, once, to
        ``take_env``). A store that is busy or not there yet is read next time."""
        rows, env = read_rows_after(store_path(self.folder), self.last_id)
        for row in rows:
            self.last_id = max(self.last_id, int(row["id"]))
            take(row)
        if env and env.get("worker_header") and not self.env_seen:
            self.env_seen = True
            take_env(self.spec.name, env)

    def ended(self) -> bool:
        if self.job is not None:
            return bool(self.job.done())
        return not is_running(self.folder)

    def failure(self) -> str | None:
        """Why the job ended without finishing its cases, or None."""
        outcome = read_outcome(self.folder)
        if outcome and outcome.get("status") == "finished":
            return None
        logs = self.folder / "submitit"
        if outcome:
            return f"{outcome.get('status')}: {outcome.get('detail', '')} (logs: {logs})"
        if self.job is not None and (self.job.paths.result_pickle.exists() or self.kind == "slurm"):
            exc = self.job.exception()  # SLURM: waits a little for a result written over NFS
            if exc is not None:
                lines = [x for x in str(exc).strip().splitlines() if x.strip() and not x.startswith("---")]
                return f"{lines[-1][:300] if lines else type(exc).__name__} (logs: {logs})"
            result = self.job.result()
            if isinstance(result, dict) and result.get("status") != "finished":
                return f"{result.get('status')}: {result.get('detail', '')} (logs: {logs})"
        return f"ended without finishing its cases: killed, or lost with its host (logs: {logs})"


@dataclass
class JobsOutcome:
    """A run's jobs: ``folder`` (``<jobs dir>/run-<id>``), ``adopted`` jobs of an earlier attempt still running,
    ``recovered`` rows merged from earlier attempts, and at the end ``failed`` [(job, why)] and
    ``still_running`` (jobs left running on the cluster when the driver stopped early)."""

    folder: Path
    adopted: list[JobWatch] = field(default_factory=list)
    recovered: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    still_running: list[str] = field(default_factory=list)

    def adopted_cases(self) -> set[str]:
        return {c.case_id for w in self.adopted for c in w.spec.case_specs()}


def recover_jobs(kind: str, *, store: Store, run_id: int, jobs_dir: Path, take: Callable[[dict[str, Any]], None],
                 take_env: Callable[[str, dict[str, Any]], None]) -> JobsOutcome:
    """Before new jobs of run ``run_id`` start: merge what the jobs of earlier attempts stored, keep the ones
    still running (``adopted``; their cases are theirs) and stop the others from ever starting."""
    outcome = JobsOutcome(folder=jobs_dir / f"run-{run_id}")
    for folder in sorted(p.parent for p in outcome.folder.glob("attempt-*/job-*/job.json")):
        w = JobWatch(JobSpec.read(folder), kind=kind)
        before = len(store.done_case_ids(run_id))
        w.merge(take, take_env)
        outcome.recovered += len(store.done_case_ids(run_id)) - before
        if read_outcome(folder) is None and not supersede(folder):
            outcome.adopted.append(w)
    return outcome


def run_jobs(kind: str, outcome: JobsOutcome, *, store: Store, run_id: int, cases: Sequence[CaseSpec],
             jobs: int | None, devices: Sequence[int] | None, slurm: SlurmSettings | None, plugins: Sequence[str],
             warm_in_job: bool, compile_columns: dict[str, dict[str, Any]], take: Callable[[dict[str, Any]], None],
             take_env: Callable[[str, dict[str, Any]], None], console: Any = None, progress: bool = True,
             poll_s: float = POLL_S) -> JobsOutcome:
    """Run ``cases`` (none skipped, none of them the ``outcome.adopted`` jobs') of run ``run_id`` as jobs, and
    wait for them and for the adopted ones; see the module docstring. ``take(row)`` stores a job's row in the
    main run; ``take_env(job, env)`` gets each job's worker header."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    run = store.run(run_id)
    run_dir = outcome.folder
    watches = list(outcome.adopted)
    todo = list(cases)
    attempt = 1 + max((int(p.name.split("-")[1]) for p in run_dir.glob("attempt-*")), default=0)
    slots = local_slots(run["device"], devices, jobs) if kind == "local" else [None]
    n_jobs = jobs or (len(slots) if kind == "local" else 1)
    specs = [JobSpec(name=f"attempt-{attempt}/job-{j:03d}",
                     folder=str(run_dir / f"attempt-{attempt}" / f"job-{j:03d}"), suite=run["suite"],
                     device=run["device"], cases=[c.to_dict() for c in group], plugins=list(plugins),
                     warm=warm_in_job, compile_columns={c.case_id: compile_columns[c.case_id] for c in group
                                                        if c.case_id in compile_columns},
                     main_db=str(store.path), main_run=run_id)
             for j, group in enumerate(group_into_jobs(todo, n_jobs) if todo else [])]
    for spec in specs:
        spec.write()
    if console is not None and specs:
        where = f"{len(slots)} slot(s) of this host" if kind == "local" else "SLURM"
        console.print(f"{len(todo)} case(s) in {len(specs)} {kind} job(s) on {where} -> {run_dir}")
    if console is not None and watches:
        console.print(f"{len(watches)} job(s) of an earlier attempt still running: waiting for them "
                      f"({', '.join(w.spec.name for w in watches)})")
    sched = SlotScheduler(slots if kind == "local" else [None] * max(1, len(specs)), specs)
    total = len(todo) + len(outcome.adopted_cases())
    stored0 = len(store.done_case_ids(run_id))
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[current]}", style="dim"))
    try:
        with Progress(*columns, console=console, disable=not progress, transient=False) as prog:
            task = prog.add_task(f"{run['suite']} ({kind} jobs)", total=total, current="")
            while not sched.finished or watches:
                for spec, slot in sched.start():
                    watches.append(JobWatch(spec, submit(kind, spec, slot, slurm), kind))
                for w in list(watches):
                    ended = w.ended()  # before merging: rows stored up to the end are merged below
                    w.merge(take, take_env)
                    if ended:
                        watches.remove(w)
                        if w.spec in sched.busy.values():
                            sched.done(w.spec)
                        why = w.failure()
                        if why:
                            outcome.failed.append((w.spec.name, why))
                running = [w.spec.name for w in watches]
                prog.update(task, completed=len(store.done_case_ids(run_id)) - stored0,
                            current=f"running: {', '.join(running[:4])}{' ...' if len(running) > 4 else ''}")
                if not sched.finished or watches:
                    time.sleep(poll_s)
    except BaseException:
        _stop(kind, watches, take, take_env, outcome)
        raise
    return outcome


def _stop(kind: str, watches: list[JobWatch], take: Callable, take_env: Callable, outcome: JobsOutcome) -> None:
    """The driver is stopping early: cancel local jobs (they would run on as orphans) and merge what they
    stored; SLURM jobs run on, and ``--resume`` merges them later."""
    if kind == "local":
        for w in watches:
            if w.job is not None:
                w.job.cancel(check=False)
        deadline = time.monotonic() + 30
        while any(not w.ended() for w in watches) and time.monotonic() < deadline:
            time.sleep(0.2)
    for w in watches:
        try:
            w.merge(take, take_env)
        except Exception:  # the merge is best effort here; --resume merges again
            pass
    if kind != "local":
        outcome.still_running = [w.spec.name for w in watches]


def remove_folder(outcome: JobsOutcome) -> None:
    """Remove a run's jobs folder (every case stored, nothing to look at), and its parent when empty."""
    shutil.rmtree(outcome.folder, ignore_errors=True)
    try:
        outcome.folder.parent.rmdir()
    except OSError:
        pass
