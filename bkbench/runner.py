"""The suite runner: every case in a worker subprocess, every result committed at once, resumable.

:func:`run_suite` expands a suite (:mod:`bkbench.suites`) for one device, opens (or, with ``resume``, reopens)
a run in the results store, and hands the cases to persistent worker processes (:mod:`bkbench.worker`): one
worker, or one per GPU with ``devices=[0, 1, ...]`` (``CUDA_VISIBLE_DEVICES`` pins each worker to its GPU;
cases are pulled from one queue, so a slow case does not hold the others back). For each case the parent
waits at most the case's ``timeout_s``:

- a result row arrives                      -> stored as it is (ok / incorrect / oom / skipped / crash);
- the worker dies (segfault, abort, sticky CUDA error, host OOM kill) -> ``crash`` with the signal or exit
  code, the stage it was in and the tail of its log; a fresh worker takes the next case;
- nothing arrives in time (a hang)          -> the worker's process group is killed, ``timeout``, new worker.

Rows are written by the parent only, one transaction each (``Store.add_result``), so killing the runner
at any moment loses at most the cases in flight. ``resume=True`` reopens the latest run of the same suite,
device and shard and runs only the cases it does not hold yet: nothing is repeated.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bkbench.registry import Registry
from bkbench.store import RETRY_STATUSES, Store, default_path
from bkbench.suites import CaseSpec, Suite, default_device, load_suite, shard

STARTUP_TIMEOUT_S = 300.0
ROOT = Path(__file__).resolve().parent.parent


class WorkerDied(RuntimeError):
    pass


def _signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name} ({-code})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class WorkerHandle:
    """One persistent worker process (restarted by :meth:`run` after a crash or timeout)."""

    def __init__(self, name: str, device: str, cuda_index: int | None, plugins: Sequence[str], log_dir: Path,
                 measure_bandwidth: bool = True, known_bw: float | None = None) -> None:
        self.known_bw = known_bw
        self.name = name
        self.device = device
        self.cuda_index = cuda_index
        self.plugins = list(plugins)
        self.log_path = log_dir / f"worker-{name}.log"
        self.measure_bandwidth = measure_bandwidth
        self.proc: subprocess.Popen[bytes] | None = None
        self.fd: int | None = None
        self.buf = b""
        self.env: dict[str, Any] = {}
        self.starts = 0

    # -- process management -----------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        env["BKBENCH_WORKER_FD"] = str(write_fd)
        env["BKBENCH_DEVICE"] = self.device
        env["BKBENCH_PARENT_PID"] = str(os.getpid())
        env["BKBENCH_PLUGINS"] = ",".join(self.plugins)
        env["BKBENCH_BANDWIDTH"] = "1" if (self.measure_bandwidth and self.starts == 0 and not self.known_bw) else "0"
        if self.known_bw:
            env["BKBENCH_COPY_BW"] = str(self.known_bw)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        if self.cuda_index is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.cuda_index)
        log = open(self.log_path, "ab")
        log.write(f"\n=== worker start {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bkbench.worker"], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(write_fd,), env=env, start_new_session=True, cwd=os.getcwd(),
        )
        log.close()
        os.close(write_fd)
        self.fd, self.buf = read_fd, b""
        self.starts += 1
        msg = self._read(time.monotonic() + STARTUP_TIMEOUT_S)
        if msg is None or msg.get("op") != "hello":
            tail = self.log_tail()
            self.kill()
            raise RuntimeError(f"worker {self.name} did not start: {tail}")
        if self.starts == 1 or msg.get("env", {}).get("copy_bandwidth_gbs"):
            self.env = msg.get("env", {})
        return self.env

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        """Kill the worker's whole process group (it runs in its own session); returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        self._close()
        return code

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.proc is not None and self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self.proc = None

    def stop(self) -> None:
        if self.alive():
            try:
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "exit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def log_tail(self, chars: int = 1500) -> str:
        try:
            data = self.log_path.read_bytes()[-chars:]
        except OSError:
            return ""
        return data.decode(errors="replace").strip()

    # -- protocol -----------------------------------------------------------------------------------------
    def _read(self, deadline: float) -> dict[str, Any] | None:
        """Next message, None on timeout; raises WorkerDied on EOF."""
        assert self.fd is not None
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise WorkerDied()
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def run(self, spec: CaseSpec, timeout_s: float) -> dict[str, Any]:
        """Run one case; always returns a row (crash / timeout rows are made here)."""
        if not self.alive():
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        t0 = time.monotonic()
        stage = "sending"
        try:
            self.proc.stdin.write((json.dumps({"op": "case", "spec": spec.to_dict()}) + "\n").encode())
            self.proc.stdin.flush()
            deadline = t0 + timeout_s
            while True:
                msg = self._read(deadline)
                if msg is None:
                    self.kill()
                    return _row(spec, "timeout", f"no result within {timeout_s:g} s (stage: {stage}); worker killed",
                                wall_s=time.monotonic() - t0, stage=stage)
                if msg.get("op") == "stage":
                    stage = msg.get("stage", stage)
                elif msg.get("op") == "result":
                    row = msg["row"]
                    if msg.get("fatal"):
                        row["worker_restarted"] = True
                        self.kill()
                    return row
        except (WorkerDied, BrokenPipeError, OSError):
            code = self.proc.wait(timeout=30) if self.proc is not None else None
            tail = self.log_tail()
            self._close()
            return _row(spec, "crash", f"worker {_signal_name(code)} during {stage}", wall_s=time.monotonic() - t0,
                        stage=stage, worker_log_tail=tail[-1200:])


def _row(spec: CaseSpec, status: str, reason: str, **extra: Any) -> dict[str, Any]:
    row = spec.identity()
    row.update(status=status, reason=reason, **extra)
    return row


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


def selected_cases(suite: str, device: str, *, shard_spec: str | None = None, groups: Sequence[str] | None = None,
                   plugins: Sequence[str] = (), impls: Sequence[str] | None = None,
                   skip_impls: Sequence[str] | None = None, missing: bool = False,
                   db: str | Path | None = None, retry: Sequence[str] = ()) -> list[CaseSpec]:
    """The cases a run with these selections would consider (``bkbench run --dry-run``, ``bkbench warm``):
    the plan, its implementation selection, and with ``missing`` only what the database ``db`` lacks (rows
    whose status is in ``retry`` count as lacking)."""
    cases = select_impls(plan(suite, device, shard_spec, groups, plugins), impls, skip_impls)
    return missing_cases(cases, load_suite(suite).name, device, db, retry) if missing else cases


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


def registry_with(plugins: Sequence[str] = ()) -> Registry:
    """The default registry, plus the ``@register`` functions of the ``plugins`` modules (in a copy: the
    process-wide default registry is left as it is)."""
    import importlib

    from bkbench.registry import default_registry

    base = default_registry()
    if not plugins:
        return base
    reg = Registry()
    for rec in base.implementations(None):
        reg.add(rec)
    reg.failures = list(base.failures)
    for name in plugins:
        reg.scan_module(importlib.import_module(name))
    return reg


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
) -> RunSummary:
    """Run ``suite`` (name or :class:`Suite`) and store every case. See the module docstring.

    ``impls`` / ``skip_impls`` select implementations; ``missing`` runs only the cases that no run of this
    suite on this device in the database holds a row for (a ``timeout`` row does not count, nor a row whose status
    is in ``retry``, e.g. ``incorrect`` after a fix), whatever shard or group stored them."""
    from bkbench.console import make_console

    t_start = time.monotonic()
    console = console or make_console()
    dev = resolve_device(device)
    s = load_suite(suite) if isinstance(suite, str) else suite
    if devices and dev != "cuda":
        raise ValueError("devices: --devices shards across GPUs; it needs --device cuda (or auto on a GPU host)")
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
        store.conn.execute("UPDATE runs SET status = 'running', finished = NULL WHERE id = ?", (run_id,))
        store.conn.commit()
    else:
        config = {"suite_digest": s.digest, "suite_path": str(s.path) if s.path else None, "shard": shard_spec,
                  "groups": list(groups) if groups else None, "devices": list(devices) if devices else None,
                  "plugins": list(plugins), "timeout_s": timeout_s, "cases": len(cases), **selection}
        run_id = store.start_run(s.name, dev, _parent_env(dev), config, run_label)
    done = store.done_case_ids(run_id) | stored_elsewhere
    todo = [c for c in cases if c.case_id not in done]
    summary = RunSummary(run_id=run_id, db=store.path, total=len(cases), already_done=len(cases) - len(todo),
                         executed=0)
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="bkbench-workers-"))
    logs.mkdir(parents=True, exist_ok=True)
    if prior is not None:
        console.print(f"resuming run {run_id} of suite {s.name!r} on {dev}: {summary.already_done} of "
                      f"{len(cases)} cases already stored, {len(todo)} to go")
    else:
        console.print(f"run {run_id}: suite {s.name!r} on {dev}, {len(todo)} cases -> {store.path}")

    counts: Counter[str] = Counter()
    interrupted = False
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workers: list[WorkerHandle] = []
    try:
        pre = [c for c in todo if c.skip_reason]
        work = [c for c in todo if not c.skip_reason]
        for c in pre:
            store.add_result(run_id, _row(c, "skipped", c.skip_reason or "", wall_s=0.0))
            counts["skipped"] += 1
            summary.executed += 1
        if work:
            slots: list[int | None] = list(devices) if devices else [None]
            known_bw = json.loads(store.run(run_id)["env_json"] or "{}").get("copy_bandwidth_gbs")
            workers = [WorkerHandle(f"{dev}{'' if i is None else i}", dev, i, plugins, logs, known_bw=known_bw)
                       for i in slots]
            _drive(workers, work, store, run_id, counts, summary, console, progress, s.name)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for w in workers:
            w.stop()
        signal.signal(signal.SIGTERM, old_term)
        store.finish_run(run_id, "interrupted" if interrupted else "finished")
        store.close()
    summary.counts = dict(counts)
    summary.seconds = time.monotonic() - t_start
    summary.interrupted = interrupted
    return summary


def _drive(workers: list[WorkerHandle], work: list[CaseSpec], store: Store, run_id: int, counts: Counter[str],
           summary: RunSummary, console: Any, show: bool, suite_name: str) -> None:
    """Feed ``work`` to the workers (one thread each) and store rows as they arrive (main thread)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    todo: queue.Queue[CaseSpec | None] = queue.Queue()
    for c in work:
        todo.put(c)
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def serve(w: WorkerHandle) -> None:
        try:
            env = w.start()
            results.put(("env", env))
        except Exception as exc:
            results.put(("fatal", f"{w.name}: {exc}"))
            return
        while not stop.is_set():
            try:
                spec = todo.get_nowait()
            except queue.Empty:
                break
            if spec is None:
                break
            results.put(("start", (w.name, spec)))
            try:
                row = w.run(spec, spec.timeout_s)
            except Exception as exc:  # could not even restart the worker
                row = _row(spec, "crash", f"worker could not run the case: {exc}")
            row["worker"] = w.name
            results.put(("row", row))
        results.put(("done", w.name))

    threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    live = len(threads)
    env_stored = False
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[current]}", style="dim"))
    with Progress(*columns, console=console, disable=not show, transient=False) as prog:
        task = prog.add_task(suite_name, total=len(work), current="starting workers")
        try:
            while live:
                kind, payload = results.get()
                if kind == "env":
                    if not env_stored and payload:
                        _store_env(store, run_id, payload)
                        env_stored = True
                elif kind == "fatal":
                    console.print(f"[bold red]worker failed to start[/bold red] {payload}")
                elif kind == "start":
                    name, spec = payload
                    prog.update(task, current=f"{name}: {spec.impl} {spec.case_key} {spec.mode}")
                elif kind == "row":
                    store.add_result(run_id, payload)
                    status = payload["status"]
                    counts[status] += 1
                    summary.executed += 1
                    if status not in ("ok", "skipped"):
                        summary.problems.append(payload)
                        console.print(f"[red]{status}[/red] {payload['impl']} {payload['case_key']} "
                                      f"{payload['mode']}: {payload.get('reason')}")
                    prog.advance(task)
                elif kind == "done":
                    live -= 1
        except KeyboardInterrupt:
            stop.set()
            for w in workers:
                w.kill()
            raise


def _parent_env(device: str) -> dict[str, Any]:
    """The run's first environment header, written before any worker starts. On a GPU run the parent does
    not touch CUDA (no context of its own); the first worker's full header (GPU, driver, clocks, measured copy
    bandwidth) replaces it."""
    import datetime as dt
    import platform
    import socket

    import torch

    from bkbench.env import environment, git_sha

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
