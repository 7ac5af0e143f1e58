"""Persistent worker processes and the loop that feeds them cases: used by runs, executor jobs and the warm-up.

A :class:`WorkerHandle` owns one ``python -m bkbench.harness.worker`` process (a
:class:`~bkbench.harness.worker_protocol. WorkerProcess`; its requests in :mod:`bkbench.harness.worker`) and turns
whatever happens to a case into a row: the worker's own result row, or — when the worker dies or does not answer within
the case's timeout — a ``crash`` / ``timeout`` row made here (the worker's process group is killed and a fresh worker
takes the next case). Every row is tagged with the host, GPU name, GPU index (``CUDA_VISIBLE_DEVICES`` of the worker)
and GPU UUID it ran on.

:func:`drive` feeds batches of cases to a list of workers (one thread each, one shared queue, so a slow case
does not hold the others back) and hands every row to a callback in the calling thread, with a progress bar.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bkbench.harness.suites import CaseSpec
from bkbench.harness.worker_protocol import (
    WorkerDied,
    WorkerError,
    WorkerProcess,
    WorkerTimeout,
    module_command,
    signal_name,
)

STARTUP_TIMEOUT_S = 300.0
ROOT = Path(__file__).resolve().parents[2]  # <checkout>/bkbench/harness/pool.py -> <checkout>
# row statuses after which the rest of a batch is not run (``drive(..., stop_batch_on=...)``)
BROKEN_STATUSES = ("crash", "timeout")


def error_row(spec: CaseSpec, status: str, reason: str, **extra: Any) -> dict[str, Any]:
    """A row for a case that produced none of its own (crash, timeout, skipped before it ran)."""
    row = spec.identity()
    row.update(status=status, reason=reason, **extra)
    return row


class WorkerHandle:
    """One persistent worker process (restarted by :meth:`run` after a crash or timeout).

    ``cuda_index``: the GPU the worker sees (``CUDA_VISIBLE_DEVICES`` is set to it; a physical id or UUID);
    None leaves the inherited ``CUDA_VISIBLE_DEVICES`` as it is. ``extra_env``: more environment variables
    for the worker (the warm-up turns fla's autotuning cache off this way)."""

    def __init__(self, name: str, device: str, cuda_index: int | str | None, plugins: Sequence[str], log_dir: Path,
                 measure_bandwidth: bool = True, known_bw: float | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.known_bw = known_bw
        self.name = name
        self.device = device
        self.cuda_index = cuda_index
        self.plugins = list(plugins)
        self.log_path = Path(log_dir) / f"worker-{name}.log"
        self.measure_bandwidth = measure_bandwidth
        self.extra_env = dict(extra_env or {})
        self.proc = WorkerProcess(name, module_command("bkbench.harness.worker"), self.log_path, pythonpath=[ROOT])
        self.env: dict[str, Any] = {}
        self.starts = 0

    # -- process management -----------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        env = dict(self.extra_env)
        env["BKBENCH_DEVICE"] = self.device
        env["BKBENCH_PLUGINS"] = ",".join(self.plugins)
        env["BKBENCH_BANDWIDTH"] = "1" if (self.measure_bandwidth and self.starts == 0 and not self.known_bw) else "0"
        if self.known_bw:
            env["BKBENCH_COPY_BW"] = str(self.known_bw)
        if self.cuda_index is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.cuda_index)
        self.proc.env = env
        self.starts += 1
        msg = self.proc.start(STARTUP_TIMEOUT_S)  # WorkerError "worker <name> did not start: <log tail>"
        if self.starts == 1 or msg.get("env", {}).get("copy_bandwidth_gbs"):
            self.env = msg.get("env", {})
        return self.env

    def alive(self) -> bool:
        return self.proc.alive()

    def kill(self) -> int | None:
        """Kill the worker's whole process group (it runs in its own session); returns its exit status."""
        return self.proc.kill()

    def stop(self) -> None:
        self.proc.stop(timeout_s=10)

    def log_tail(self, chars: int = 1500) -> str:
        return self.proc.log_tail(chars)

    def ask(self, op: str, timeout_s: float | None = None, **fields: Any) -> dict[str, Any]:
        """One request other than a case (the gate's ``tuned`` check): the worker's answer. Starts the worker when
        it is not running; a worker that dies or says nothing within ``timeout_s`` (None: no limit) is killed and
        the :class:`~bkbench.harness.worker_protocol.WorkerError` re-raised; one that answers ``fatal`` is killed."""
        if not self.alive():
            self.start()
        try:
            ans = self.proc.request(op, timeout_s=timeout_s, **fields)
        except WorkerError:
            self.kill()
            raise
        if ans.get("fatal"):
            self.kill()
        return ans

    def where(self) -> dict[str, Any]:
        """Where this worker's cases run: host, GPU name and index (GPU runs), worker name."""
        tag: dict[str, Any] = {"host": self.env.get("host") or socket.gethostname(), "worker": self.name}
        if self.device == "cuda":
            index = self.cuda_index if self.cuda_index is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
            tag.update(gpu_name=self.env.get("gpu"), gpu_index=None if index is None else str(index),
                       gpu_uuid=self.env.get("gpu_uuid"))
        return tag

    def run(self, spec: CaseSpec, timeout_s: float, op: str = "case") -> dict[str, Any]:
        """Run one case (``op`` "case": measure it; "warm": prepare and call it once); always returns a row
        (crash / timeout rows are made here), tagged with :meth:`where` it ran."""
        row = self._run(spec, timeout_s, op)
        row.update(self.where())
        return row

    def _run(self, spec: CaseSpec, timeout_s: float, op: str) -> dict[str, Any]:
        if not self.alive():
            self.start()
        t0 = time.monotonic()
        stage = "sending"

        def on_progress(msg: dict[str, Any]) -> None:
            nonlocal stage
            stage = msg.get("stage", stage)

        try:
            ans = self.proc.request(op, timeout_s=timeout_s, on_progress=on_progress, spec=spec.to_dict())
        except WorkerTimeout:
            self.kill()
            return error_row(spec, "timeout", f"no result within {timeout_s:g} s (stage: {stage}); worker "
                             "killed", wall_s=time.monotonic() - t0, stage=stage, worker_log=str(self.log_path))
        except WorkerDied as exc:
            self.proc.close()
            return error_row(spec, "crash", f"worker {signal_name(exc.code)} during {stage}",
                             wall_s=time.monotonic() - t0, stage=stage, worker_log_tail=exc.log_tail[-1200:],
                             worker_log=str(self.log_path))
        row = ans["row"]
        if ans.get("fatal"):
            row["worker_restarted"] = True
            self.kill()
        return row


def drive(workers: Sequence[WorkerHandle], batches: Sequence[Sequence[CaseSpec]], on_row: Callable[[dict], None], *,
          op: str = "case", title: str = "", console: Any = None, show: bool = True,
          on_env: Callable[[dict], None] = lambda env: None, timeout_of: Callable[[CaseSpec], float] | None = None,
          stop_batch_on: Sequence[str] = ()) -> None:
    """Run every case of ``batches`` on ``workers`` and call ``on_row(row)`` for each, in the calling thread.

    A batch is run in order by one worker (a kernel's cases one after another, so its compiled code and
    autotuning choices are reused); different batches run in parallel. When a case of a batch ends with a
    status in ``stop_batch_on``, the rest of that batch is not run: each gets a ``skipped`` row saying why.
    ``on_env`` receives each worker's environment header when it starts; ``timeout_of(spec)`` gives a case's
    timeout (default ``spec.timeout_s``). On Ctrl-C (or any exception) the workers are killed and it re-raises."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    timeout_of = timeout_of or (lambda spec: spec.timeout_s)
    todo: queue.Queue[Sequence[CaseSpec]] = queue.Queue()
    for batch in batches:
        if batch:
            todo.put(batch)
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def serve(w: WorkerHandle) -> None:
        try:
            results.put(("env", w.start()))
        except Exception as exc:
            results.put(("fatal", f"{w.name}: {exc}"))
            results.put(("done", w.name))
            return
        while not stop.is_set():
            try:
                batch = todo.get_nowait()
            except queue.Empty:
                break
            broken = ""
            for spec in batch:
                if stop.is_set():
                    break
                if broken:
                    results.put(("row", error_row(spec, "skipped", broken, **w.where())))
                    continue
                results.put(("start", (w.name, spec)))
                try:
                    row = w.run(spec, timeout_of(spec), op)
                except Exception as exc:  # could not even restart the worker
                    row = error_row(spec, "crash", f"worker could not run the case: {exc}", **w.where())
                if row["status"] in stop_batch_on:
                    broken = f"not run: {spec.impl} {spec.case_key} {spec.mode} ended with {row['status']} just before"
                results.put(("row", row))
        results.put(("done", w.name))

    threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    live = len(threads)
    total = sum(len(b) for b in batches)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[current]}", style="dim"))
    with Progress(*columns, console=console, disable=not show, transient=False) as prog:
        task = prog.add_task(title, total=total, current="starting workers")
        try:
            while live:
                kind, payload = results.get()
                if kind == "env":
                    on_env(payload)
                elif kind == "fatal":
                    if console is not None:
                        console.print(f"[bold red]worker failed to start[/bold red] {payload}")
                elif kind == "start":
                    name, spec = payload
                    prog.update(task, current=f"{name}: {spec.impl} {spec.case_key} {spec.mode}")
                elif kind == "row":
                    on_row(payload)
                    prog.advance(task)
                elif kind == "done":
                    live -= 1
        except BaseException:  # Ctrl-C, SIGTERM, or a job's requeue (SystemExit): no worker outlives this
            stop.set()
            for w in workers:
                w.kill()
            raise
