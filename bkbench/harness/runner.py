"""The suite runner: every case in a worker subprocess, every result committed at once, resumable.

:func:`run_suite` expands a suite (:mod:`bkbench.harness.suites`) for one device, opens (or, with ``resume``, reopens)
a run in the results store, warms the cases up (:mod:`bkbench.harness.warm`: compiles their kernels in parallel
processes; on by default, nothing to do on the CPU) and runs them with one of three executors:

- ``inline`` (default): persistent worker processes of this process (:mod:`bkbench.harness.pool`): one, or one per
  GPU with ``devices=[0, 1, ...]`` (``CUDA_VISIBLE_DEVICES`` pins each worker to its GPU; cases are pulled from
  one queue, so a slow case does not hold the others back);
- ``local`` / ``slurm``: the cases grouped into jobs submitted through submitit (:mod:`bkbench.harness.executors`),
  each running the same worker loop into a store in its folder, merged into this run as rows arrive.

For each case a worker gets at most the case's ``timeout_s``:

- a result row arrives                      -> stored as it is (ok / incorrect / oom / skipped / crash);
- the worker dies (segfault, abort, sticky CUDA error, host OOM kill) -> ``crash`` with the signal or exit
  code, the stage it was in and the tail of its log; a fresh worker takes the next case;
- nothing arrives in time (a hang)          -> the worker's process group is killed, ``timeout``, new worker.

Rows are written by this process only, one transaction each, so killing the runner at any moment loses at
most the cases in flight. ``resume=True`` reopens the latest run of the same suite, device and shard and runs
only the cases it does not hold yet: nothing is repeated. Worker logs go to a temporary folder that is removed
when the run ends, unless a case crashed or timed out: then it is kept and named (or to ``log_dir``, kept).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bkbench.harness.pool import BROKEN_STATUSES
from bkbench.harness.suites import CaseSpec, Suite, default_device, load_suite, shard
from bkbench.plugins import registry_with
from bkbench.store import RETRY_STATUSES, Store, default_path


# -- runs ---------------------------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    run_id: int
    db: Path
    total: int  # cases in the plan (this shard)
    already_done: int  # held by the run before this invocation (resume)
    executed: int  # cases run by this invocation
    counts: dict[str, int] = field(default_factory=dict)  # statuses of the cases run now
    seconds: float = 0.0
    interrupted: bool = False
    problems: list[dict[str, Any]] = field(default_factory=list)  # non-ok, non-skipped rows run now
    warm_s: float = 0.0  # wall time of the warm-up (compilation before timing)
    missing: int = 0  # planned cases the run still lacks at the end (failed jobs; --resume runs them)
    kept: list[str] = field(default_factory=list)  # folders kept for a look: worker logs, job folders
    notes: list[str] = field(default_factory=list)  # what the command line should say at the end


SELECTION_KEYS = ("impls", "skip_impls", "missing", "retry")  # a run's case selection, as its config stores it


def _identity(label: str | None, shard: str | None, groups: Sequence[str] | None,
              selection: dict[str, Any]) -> dict[str, Any]:
    """What a run must share with a ``--resume`` request to be continued by it: label, shard, groups and the
    case selection (--impl / --skip-impl / --missing / --retry; the :data:`SELECTION_KEYS` of ``selection``)."""
    return {"label": label or "", "shard": shard, "groups": sorted(groups) if groups else None,
            "selection": {k: selection[k] for k in SELECTION_KEYS if selection.get(k)}}


def _find_resumable(store: Store, suite: str, device: str,
                    want: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(run, "") for the latest run of the same suite and device whose :func:`_identity` is ``want`` (a run of
    another shard is never resumed, even when the runs share a label); else (None, why): how the latest run of
    this suite on this device differs from ``want``, or that there is none."""
    latest: tuple[dict[str, Any], dict[str, Any]] | None = None
    for run in reversed(store.runs()):
        if run["suite"] != suite or run["device"] != device:
            continue
        config = json.loads(run["config_json"] or "{}")
        have = _identity(run["label"], config.get("shard"), config.get("groups"), config)
        if have == want:
            return run, ""
        latest = latest or (run, have)
    if latest is None:
        return None, f"no run of {suite!r} on {device} in {store.path}"
    run, have = latest
    diffs = [f"{k} {have[k]!r} (now {want[k]!r})" for k in want if have[k] != want[k]]
    return None, f"the latest run of {suite!r} on {device}, run {run['id']}, had " + ", ".join(diffs)


def select_impls(cases: list[CaseSpec], impls: Sequence[str] | None = None,
                 skip_impls: Sequence[str] | None = None) -> list[CaseSpec]:
    """The cases of the implementations in ``impls`` (all when None), minus those in ``skip_impls``. A name
    that no case of the plan uses is an error (a typo would otherwise select nothing, silently)."""
    names = {c.impl for c in cases}
    for arg, sel in (("impl", impls), ("skip_impl", skip_impls)):
        unknown = sorted(set(sel or ()) - names)
        if unknown:
            raise ValueError(f"{arg}: {unknown} not in this plan; its implementations: {sorted(names)}")
    keep = set(impls) if impls else names
    keep -= set(skip_impls or ())
    return [c for c in cases if c.impl in keep]


def selected_cases(suite: Suite | str, device: str, *, shard_spec: str | None = None,
                   groups: Sequence[str] | None = None, plugins: Sequence[str] = (), impls: Sequence[str] | None = None,
                   skip_impls: Sequence[str] | None = None, missing: bool = False,
                   db: str | Path | None = None, retry: Sequence[str] = ()) -> list[CaseSpec]:
    """The cases a run with these selections would consider (``bkbench run --dry-run``, ``bkbench warm``):
    the plan, its implementation selection, and with ``missing`` only what the database ``db`` lacks (rows
    whose status is in ``retry`` count as lacking)."""
    s = load_suite(suite) if isinstance(suite, str) else suite  # parsed once
    cases = select_impls(plan(s, device, shard_spec, groups, plugins), impls, skip_impls)
    return missing_cases(cases, s.name, device, db, retry) if missing else cases


def missing_cases(cases: list[CaseSpec], suite_name: str, device: str, db: str | Path | None,
                  retry: Sequence[str] = ()) -> list[CaseSpec]:
    """The ``cases`` that no run of ``suite_name`` on ``device`` in the database ``db`` holds (what
    ``--missing`` runs; a timeout row does not count, nor a row whose status is in ``retry``). All of them when
    the database does not exist yet."""
    path = Path(db) if db else default_path()
    if not path.exists():
        return list(cases)
    with Store(path) as store:
        held = store.stored_case_ids(suite_name, device, _not_held(retry))
    return [c for c in cases if c.case_id not in held]


def _not_held(retry: Sequence[str]) -> tuple[str, ...]:
    """Row statuses that do not count as holding a case for ``--missing``: timeout, plus ``retry``."""
    bad = sorted(set(retry) - set(RETRY_STATUSES))
    if bad:
        raise ValueError(f"retry: {bad} are not statuses that can be retried; choose from {list(RETRY_STATUSES)}")
    return ("timeout", *retry)


def resolve_device(device: str, require: bool = True) -> str:
    """``device`` checked and resolved (``auto`` -> cuda when available, else cpu). ``require=False`` accepts
    ``cuda`` on a machine without one (planning a GPU run, ``bkbench run --dry-run``)."""
    if device == "auto":
        return default_device()
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: {device!r} is not one of cpu, cuda, auto")
    if device == "cuda" and require:
        import torch

        if not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was requested but torch.cuda.is_available() is False; use --device cpu")
    return device


def plan(suite: Suite | str, device: str, shard_spec: str | None = None, groups: Sequence[str] | None = None,
         plugins: Sequence[str] = ()) -> list[CaseSpec]:
    """The cases a run of ``suite`` on ``device`` would execute (after sharding)."""
    s = load_suite(suite) if isinstance(suite, str) else suite
    return shard(s.expand(registry_with(plugins), device, groups), shard_spec)


def run_suite(
    suite: Suite | str,
    *,
    device: str = "auto",
    db: str | Path | None = None,
    resume: bool = False,
    devices: Sequence[int] | None = None,
    shard_spec: str | None = None,
    groups: Sequence[str] | None = None,
    plugins: Sequence[str] = (),
    timeout_s: float | None = None,
    label: str = "",
    progress: bool = True,
    console: Any = None,
    log_dir: str | Path | None = None,
    impls: Sequence[str] | None = None,
    skip_impls: Sequence[str] | None = None,
    missing: bool = False,
    retry: Sequence[str] = (),
    warm: bool = True,
    warm_jobs: int | None = None,
    executor: str = "inline",
    jobs: int | None = None,
    jobs_dir: str | Path | None = None,
    slurm: Any = None,
) -> RunSummary:
    """Run ``suite`` (name or :class:`Suite`) and store every case. See the module docstring.

    ``impls`` / ``skip_impls`` select implementations; ``missing`` runs only the cases that no run of this
    suite on this device in the database holds a row for (a ``timeout`` row does not count, nor a row whose status
    is in ``retry``, e.g. ``incorrect`` after a fix), whatever shard or group stored them. ``warm`` compiles the
    cases' kernels first (``warm_jobs`` processes; default: the host's cores); ``executor`` "local" or "slurm"
    runs the cases as ``jobs`` jobs whose folders go under ``jobs_dir`` (default ``<db stem>-jobs/`` next to
    the database), with the :class:`bkbench.harness.executors.SlurmSettings` ``slurm``."""
    from bkbench.harness.console import make_console
    from bkbench.harness.executors import require_submitit

    t_start = time.monotonic()
    console = console or make_console()
    require_submitit(executor)
    dev = resolve_device(device, require=executor != "slurm")  # a SLURM driver may run on a login node
    s = load_suite(suite) if isinstance(suite, str) else suite
    if devices and dev != "cuda":
        raise ValueError("devices: --devices shards across GPUs; it needs --device cuda (or auto on a GPU host)")
    if devices and executor == "slurm":
        raise ValueError("devices: --devices names GPUs of this host; with --executor slurm SLURM places the jobs "
                         "(--slurm-gpus-per-job)")
    if jobs is not None and (executor == "inline" or jobs < 1):
        raise ValueError(f"jobs: --jobs {jobs} needs --executor local or slurm and a number >= 1")
    if retry and not missing:
        raise ValueError("retry: re-runs stored cases of a status only together with --missing")
    not_held = _not_held(retry)
    cases = select_impls(plan(s, dev, shard_spec, groups, plugins), impls, skip_impls)
    selection = {k: v for k, v in (("impls", sorted(impls or [])), ("skip_impls", sorted(skip_impls or [])),
                                   ("missing", missing), ("retry", sorted(retry))) if v}
    if timeout_s is not None:
        cases = [replace(c, timeout_s=float(timeout_s)) for c in cases]
    run_label = label or " ".join(x for x in (f"shard {shard_spec}" if shard_spec else "",
                                               f"groups {','.join(groups)}" if groups else "") if x)
    store = Store(db)
    prior = None
    if resume:
        prior, why = _find_resumable(store, s.name, dev, _identity(run_label, shard_spec, groups, selection))
        if prior is None:
            console.print(f"[yellow]--resume[/yellow]: no run to continue ({why}); starting a new run. To "
                          "continue a run, repeat its command exactly, plus --resume.")
    stored_elsewhere = store.stored_case_ids(s.name, dev, not_held) if missing else set()
    if missing and prior is None and all(c.case_id in stored_elsewhere for c in cases):
        # nothing to fill in: say so, and leave no empty run behind (run_id 0 = no run was opened)
        console.print(f"suite {s.name!r} on {dev}: every one of the {len(cases)} planned cases is already stored "
                      f"in {store.path}; nothing missing")
        store.close()
        return RunSummary(run_id=0, db=store.path, total=len(cases), already_done=len(cases), executed=0,
                          seconds=time.monotonic() - t_start)
    if prior is not None:
        run_id = int(prior["id"])
        store.reopen_run(run_id)
    else:
        config = {"suite_digest": s.digest, "suite_path": str(s.path) if s.path else None, "shard": shard_spec,
                  "groups": list(groups) if groups else None, "devices": list(devices) if devices else None,
                  "plugins": list(plugins), "timeout_s": timeout_s, "cases": len(cases), "executor": executor,
                  "jobs": jobs, **selection}
        run_id = store.start_run(s.name, dev, _parent_env(dev), config, run_label)
    done = store.done_case_ids(run_id) | stored_elsewhere
    todo = [c for c in cases if c.case_id not in done]
    summary = RunSummary(run_id=run_id, db=store.path, total=len(cases), already_done=len(cases) - len(todo),
                         executed=0)
    if prior is not None:
        console.print(f"resuming run {run_id} of suite {s.name!r} on {dev}: {summary.already_done} of "
                      f"{len(cases)} cases already stored, {len(todo)} to go")
    else:
        console.print(f"run {run_id}: suite {s.name!r} on {dev}, {len(todo)} cases -> {store.path}")

    counts: Counter[str] = Counter()

    def take(row: dict[str, Any]) -> None:
        """Store one row of this run (never over a row it holds) and count it."""
        outcome = store.add_result_if_new(run_id, row)
        if outcome == "conflict":
            summary.notes.append(f"{row['case_id']}: stored twice with different results; the first row is kept")
        if outcome != "added":
            return
        status = row["status"]
        counts[status] += 1
        summary.executed += 1
        if status not in ("ok", "skipped"):
            summary.problems.append(row)
            console.print(f"[red]{status}[/red] {row['impl']} {row['case_key']} {row['mode']}: {row.get('reason')}")

    interrupted = False
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="bkbench-workers-"))
    logs.mkdir(parents=True, exist_ok=True)
    outcome = None
    try:
        for c in todo:
            if c.skip_reason:
                take({**c.identity(), "status": "skipped", "reason": c.skip_reason, "wall_s": 0.0,
                      "host": socket.gethostname(), "worker": "planner"})  # declined here, before any worker
        work = [c for c in todo if not c.skip_reason]
        if executor != "inline":  # first what the jobs of an earlier attempt stored, or still run
            from bkbench.harness.executors import recover_jobs, run_jobs

            def take_env(job: str, env: dict[str, Any]) -> None:
                _store_job_env(store, run_id, job, env)

            folder = Path(jobs_dir) if jobs_dir else store.path.parent / f"{store.path.stem}-jobs"
            outcome = recover_jobs(executor, store=store, run_id=run_id, jobs_dir=folder, take=take,
                                   take_env=take_env)
            held = store.done_case_ids(run_id) | outcome.adopted_cases()
            work = [c for c in work if c.case_id not in held]
        columns: dict[str, dict[str, Any]] = {}
        if work and warm and executor != "slurm":  # SLURM jobs warm up on their own nodes
            columns = _warm_up(work, summary, devices, plugins, warm_jobs, log_dir, console, progress)
        if work and executor == "inline":
            _run_inline(work, dev, devices, plugins, logs, store, run_id, take, columns, console, progress, s.name)
        elif outcome is not None and (work or outcome.adopted):
            run_jobs(executor, outcome, store=store, run_id=run_id, cases=work, jobs=jobs, devices=devices,
                     slurm=slurm, plugins=plugins, warm_in_job=warm and executor == "slurm", compile_columns=columns,
                     take=take, take_env=take_env, console=console, progress=progress)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old_term)
        held = store.done_case_ids(run_id) | stored_elsewhere
        summary.missing = sum(c.case_id not in held for c in cases)
        store.finish_run(run_id, "interrupted" if interrupted or summary.missing else "finished")
        store.close()
        _tidy(summary, logs, temporary=not log_dir, outcome=outcome)
    summary.counts = dict(counts)
    summary.seconds = time.monotonic() - t_start
    summary.interrupted = interrupted
    return summary


def _warm_up(work: list[CaseSpec], summary: RunSummary, devices: Sequence[int] | None, plugins: Sequence[str],
             jobs: int | None, log_dir: str | Path | None, console: Any, progress: bool) -> dict[str, dict[str, Any]]:
    """Compile ``work``'s kernels before timing (:func:`bkbench.harness.warm.warm`); {case_id: compile columns}."""
    from bkbench.harness.warm import compile_columns, default_jobs, kernels, needs_warm, slowest_kernels, warm

    if not needs_warm(work):
        return {}
    t0 = time.monotonic()
    n_kernels = len(kernels(work))
    n_jobs = min(jobs or default_jobs(n_kernels), n_kernels)
    console.print(f"warm-up: compiling {n_kernels} kernels ({len(work)} cases) in {n_jobs} processes "
                  "(--no-warm skips it)")
    results = warm(work, jobs=n_jobs, devices=devices, plugins=plugins, log_dir=log_dir, console=console,
                   progress=progress)
    summary.warm_s = time.monotonic() - t0
    bad = [r for r in results if r.status not in ("ok", "skipped")]
    console.print(f"warm-up: {summary.warm_s:.1f} s" + (f"; {len(bad)} case(s) failed to warm up (the timed run "
                                                          "records their errors)" if bad else ""))
    slowest = slowest_kernels(results)
    if slowest:
        console.print("warm-up: slowest kernels " + "; ".join(slowest))
    return compile_columns(results)


def _run_inline(work: list[CaseSpec], dev: str, devices: Sequence[int] | None, plugins: Sequence[str], logs: Path,
                store: Store, run_id: int, take: Any, columns: dict[str, dict[str, Any]], console: Any,
                progress: bool, title: str) -> None:
    """Run ``work`` in this process's workers: one, or one per GPU of ``devices``."""
    from bkbench.harness.pool import WorkerHandle, drive
    from bkbench.harness.warm import with_compile_columns

    slots: list[int | None] = list(devices) if devices else [None]
    known_bw = json.loads(store.run(run_id)["env_json"] or "{}").get("copy_bandwidth_gbs")
    workers = [WorkerHandle(f"{dev}{'' if i is None else i}", dev, i, plugins, logs, known_bw=known_bw)
               for i in slots]
    env_stored = False

    def on_env(env: dict[str, Any]) -> None:
        nonlocal env_stored
        if not env_stored and env:
            _store_env(store, run_id, env)
            env_stored = True

    try:
        drive(workers, [[c] for c in work], lambda row: take(with_compile_columns(row, columns)), title=title,
              console=console, show=progress, on_env=on_env)
    finally:
        for w in workers:
            w.stop()


def _tidy(summary: RunSummary, logs: Path, temporary: bool, outcome: Any) -> None:
    """Remove what nobody needs to look at: the temporary worker-log folder unless a case crashed or timed
    out, the run's jobs folder unless a job failed or cases are missing. Kept folders go to ``summary.kept``."""
    from bkbench.harness.executors import remove_folder

    broken = any(r["status"] in BROKEN_STATUSES for r in summary.problems)
    if temporary:
        if broken and any(logs.iterdir()):
            summary.kept.append(str(logs))
        else:
            shutil.rmtree(logs, ignore_errors=True)
    if outcome is not None:
        if outcome.failed or outcome.still_running or summary.missing or broken:
            summary.kept.append(str(outcome.folder))
            summary.notes += [f"job {job}: {why}" for job, why in outcome.failed]
            if outcome.still_running:
                summary.notes.append(f"{len(outcome.still_running)} SLURM job(s) still running; --resume merges "
                                     "their rows")
        else:
            remove_folder(outcome)
        if outcome.recovered:
            summary.notes.append(f"{outcome.recovered} row(s) recovered from jobs of an earlier attempt")

def _parent_env(device: str) -> dict[str, Any]:
    """The run's first environment header, written before any worker starts. On a GPU run the parent does
    not touch CUDA (no context of its own); the first worker's full header (GPU, driver, clocks, measured copy
    bandwidth) replaces it."""
    import datetime as dt
    import platform
    import socket

    import torch

    from bkbench.harness.env import environment, git_sha

    if device == "cpu":
        return environment(measure_bandwidth=False)
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": socket.gethostname(),
            "python": platform.python_version(), "torch": torch.__version__, "git_sha": git_sha()}


def _store_env(store: Store, run_id: int, worker_env: dict[str, Any]) -> None:
    """Merge the first worker's environment into the run's header. A resumed run keeps its first header
    (and bandwidth); the resuming invocation's header is added under ``resumed``."""
    run = store.run(run_id)
    env = json.loads(run["env_json"] or "{}")
    if env.get("worker_header"):
        env.setdefault("resumed", []).append({k: worker_env.get(k) for k in ("date", "host", "git_sha", "gpu",
                                                                             "driver", "torch")})
    else:
        env.update({k: v for k, v in worker_env.items() if v is not None})
        env["worker_header"] = True
    store.update_run_env(run_id, env)


def _store_job_env(store: Store, run_id: int, job: str, env: dict[str, Any]) -> None:
    """A job's worker header: the run's header when it has none from a worker yet, and a line of the run's
    ``jobs`` list (job, host, GPU, driver, date) in any case."""
    header = json.loads(store.run(run_id)["env_json"] or "{}")
    if not header.get("worker_header"):
        header.update({k: v for k, v in env.items() if v is not None and k != "job"})
        header["worker_header"] = True
    header.setdefault("jobs", []).append({"job": job, **{k: env.get(k) for k in ("host", "gpu", "driver", "date")}})
    store.update_run_env(run_id, header)
