"""The one protocol of bkbench's worker processes, both sides of it.

Its users: :mod:`bkbench.harness.pool` (the runner, executor jobs and the warm-up) over ``python -m
bkbench.harness.worker``, and :mod:`bkbench.harness.premerge` over its timing worker
``bkbench/harness/premerge_worker.py``, loaded by path with the tree to time (the base export or the working tree)
first on ``PYTHONPATH``.

Starting (:class:`WorkerProcess`, parent side): the command is ``python -m <module>`` (:func:`module_command`) or
``python -c BOOT <script> [args]`` (:func:`script_command`: runs a file by path, as ``__main__``). The worker's
environment is the parent's plus ``env``, less ``unset``, with ``pythonpath`` in front of ``PYTHONPATH``; its
stdout and stderr go to a log file (appended to after a ``=== worker start`` banner, or written afresh); it runs in
a session of its own, so :meth:`WorkerProcess.kill` kills its whole process group (whatever it started too).

Framing, JSON lines:

    parent -> worker (its stdin):           {"op": <request>, ...} per request; {"op": "exit"} to end
    worker -> parent (fd $BKBENCH_WORKER_FD, a pipe of its own: never stdout, so whatever a kernel prints
                      cannot corrupt the protocol):
                                            {"op": "hello", "pid", ...} once, when the worker is ready;
                                            per request any number of {"op": "progress", ...}, then one
                                            {"op": "answer", ...}

Failures (parent side): the worker's pipe ending (the worker died) or its stdin breaking raises
:class:`WorkerDied`, with the exit status; no message before the deadline raises :class:`WorkerTimeout` (the
worker is left as it is: the caller decides, usually :meth:`WorkerProcess.kill`). Both are :class:`WorkerError`,
which carries ``code`` (the exit status, None when unknown or still running), ``cause`` (the OSError of a broken
pipe, if that was it) and ``log_tail`` (the end of the worker's log).

Worker side: :func:`connect` gives the :class:`Channel` of ``$BKBENCH_WORKER_FD`` (and makes the worker die with
its parent); :meth:`Channel.requests` yields the requests until ``exit`` or EOF; :meth:`Channel.answer`,
:meth:`Channel.progress`; :func:`serve` answers requests with handlers (``{"ok": true, ...}`` or ``{"ok": false,
"error"}``).

This module imports nothing of bkbench: premerge's worker loads it by path from the working tree while it imports
bkbench from the tree it times.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

FD_ENV = "BKBENCH_WORKER_FD"
PARENT_ENV = "BKBENCH_PARENT_PID"
# ``python -c BOOT <script> [args]``: run <script> by path as __main__, with sys.argv = [<script>, args...]
BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def module_command(module: str, *args: str) -> list[str]:
    """``python -m <module> [args]`` on this interpreter."""
    return [sys.executable, "-m", module, *args]


def script_command(script: str | Path, *args: str) -> list[str]:
    """``python -c BOOT <script> [args]`` on this interpreter: the file runs by path as ``__main__`` (its folder is
    not put on ``sys.path``, unlike ``python <script>``)."""
    return [sys.executable, "-c", BOOT, str(script), *args]


def signal_name(code: int | None) -> str:
    """A process exit status in words: ``killed by signal SIGSEGV (11)``, ``exited with code 3``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name} ({-code})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class WorkerError(RuntimeError):
    """A worker failed: ``code`` its exit status (None: unknown, or still running), ``cause`` the OSError of a broken
    pipe (or None), ``log_tail`` the end of its log."""

    def __init__(self, message: str, code: int | None = None, cause: BaseException | None = None,
                 log_tail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.cause = cause
        self.log_tail = log_tail


class WorkerDied(WorkerError):
    """The worker's pipe ended or its stdin broke: it died (or is dying)."""


class WorkerTimeout(WorkerError):
    """No message from the worker before the deadline (it is left running)."""


# -- parent side -----------------------------------------------------------------------------------------------------
class WorkerProcess:
    """One worker process: :meth:`start` it (waits for its hello), :meth:`request` answers, :meth:`stop` or
    :meth:`kill` it; it can be started again after it ended.

    ``command``: :func:`module_command` or :func:`script_command`. ``log_path``: its stdout and stderr;
    ``append_log``: append after a start banner (a restarted worker keeps the earlier logs), else write afresh.
    ``env`` / ``unset``: environment variables to set / remove; ``pythonpath``: folders put first on
    ``PYTHONPATH``; ``cwd``: its working directory (default the parent's)."""

    def __init__(self, name: str, command: Sequence[str], log_path: str | Path, *, env: Mapping[str, str] | None = None,
                 unset: Sequence[str] = (), pythonpath: Sequence[str | Path] = (), cwd: str | Path | None = None,
                 append_log: bool = True) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.unset = list(unset)
        self.pythonpath = [str(p) for p in pythonpath]
        self.cwd = str(cwd) if cwd is not None else None
        self.append_log = append_log
        self.proc: subprocess.Popen[bytes] | None = None
        self.fd: int | None = None
        self.buf = b""
        self.hello: dict[str, Any] = {}

    def start(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Start the worker and wait (up to ``timeout_s``; None: no limit) for its hello, which it returns. A worker
        that dies first, says something else or says nothing in time is killed: :class:`WorkerDied` /
        :class:`WorkerTimeout` ``worker <name> did not start: <log tail>``."""
        if self.proc is not None:  # an earlier process of this worker (ended, or to be replaced)
            self.kill()
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        env.update(self.env)
        for key in self.unset:
            env.pop(key, None)
        env[FD_ENV] = str(write_fd)
        env[PARENT_ENV] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (*self.pythonpath, os.environ.get("PYTHONPATH", "")) if p)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab" if self.append_log else "wb") as log:
            if self.append_log:
                log.write(f"\n=== worker start {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
                log.flush()
            try:
                self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                             pass_fds=(write_fd,), env=env, start_new_session=True,
                                             cwd=self.cwd or os.getcwd())
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
        self.fd, self.buf = read_fd, b""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        error: type[WorkerError] = WorkerDied
        try:
            msg: dict[str, Any] | None = self.receive(deadline)
        except WorkerTimeout:
            msg, error = None, WorkerTimeout
        except WorkerDied:
            msg = None
        if msg is None or msg.get("op") != "hello":
            tail = self.log_tail()
            code = self.kill()
            raise error(f"worker {self.name} did not start: {tail}", code=code, log_tail=tail)
        self.hello = msg
        return msg

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, msg: Mapping[str, Any]) -> None:
        """Write one request; :class:`WorkerDied` when the worker has ended or its stdin is broken."""
        if not self.alive():
            raise self._died(None)
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise self._died(exc) from None

    def receive(self, deadline: float | None = None) -> dict[str, Any]:
        """The worker's next message (``deadline``: a ``time.monotonic()`` value, None: wait as long as it takes);
        :class:`WorkerTimeout` at the deadline, :class:`WorkerDied` when its pipe ends."""
        if self.fd is None:
            raise self._died(None)
        while b"\n" not in self.buf:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WorkerTimeout(f"worker {self.name}: no message in time", log_tail=self.log_tail())
            ready, _, _ = select.select([self.fd], [], [], 1.0 if left is None else min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise self._died(None)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, op: str, *, timeout_s: float | None = None,
                on_progress: Callable[[dict[str, Any]], None] | None = None, **fields: Any) -> dict[str, Any]:
        """Send ``{"op": op, **fields}`` and return the worker's answer (its message, ``op`` included), handing each
        progress message to ``on_progress``. ``timeout_s`` bounds the whole request (None: no limit)."""
        self.send({"op": op, **fields})
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            msg = self.receive(deadline)
            if msg.get("op") == "answer":
                return msg
            if msg.get("op") == "progress" and on_progress is not None:
                on_progress(msg)

    def _died(self, cause: BaseException | None) -> WorkerDied:
        """The error for a worker found dead: waits for its exit status (30 s at most)."""
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None
        tail = self.log_tail()
        how = f"died ({cause})" if cause is not None else signal_name(code)
        return WorkerDied(f"worker {self.name} {how}", code=code, cause=cause, log_tail=tail)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to exit, wait up to ``timeout_s`` for it, then :meth:`kill` whatever is left."""
        if self.alive():
            try:
                self.send({"op": "exit"})
                assert self.proc is not None
                self.proc.wait(timeout=timeout_s)
            except Exception:
                pass
        self.kill()

    def kill(self) -> int | None:
        """Kill the worker's whole process group and close its pipes; returns its exit status (None: not started,
        or it outlived 30 s after SIGKILL)."""
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
        self.close()
        return code

    def close(self) -> None:
        """Close the pipes to the worker and forget it (the process itself is left as it is)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.proc is not None and self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self.proc = None

    def log_tail(self, chars: int = 1500) -> str:
        """The last ``chars`` characters of the worker's log, stripped ("" when there is none)."""
        try:
            data = self.log_path.read_bytes()[-chars:]
        except OSError:
            return ""
        return data.decode(errors="replace").strip()


# -- worker side -----------------------------------------------------------------------------------------------------
class Channel:
    """The worker's end: requests from ``stdin``, messages to the pipe ``fd`` (default ``$BKBENCH_WORKER_FD``)."""

    def __init__(self, fd: int | None = None, stdin: IO[str] | None = None) -> None:
        self.out = os.fdopen(int(os.environ[FD_ENV]) if fd is None else fd, "w", buffering=1)
        self.stdin = stdin if stdin is not None else sys.stdin

    def send(self, msg: Mapping[str, Any]) -> None:
        self.out.write(json.dumps(msg, default=str) + "\n")
        self.out.flush()

    def hello(self, **info: Any) -> None:
        """The handshake: this worker is ready (its pid and ``info``)."""
        self.send({"op": "hello", "pid": os.getpid(), **info})

    def progress(self, **fields: Any) -> None:
        self.send({"op": "progress", **fields})

    def answer(self, **fields: Any) -> None:
        self.send({"op": "answer", **fields})

    def requests(self) -> Iterator[dict[str, Any]]:
        """The parent's requests, until ``{"op": "exit"}`` or the end of stdin."""
        for line in self.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            if req.get("op") == "exit":
                return
            yield req

    def close(self) -> None:
        self.out.close()


def die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when its parent dies (a killed runner leaves no orphan holding the GPU); a
    worker whose parent is already gone exits."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        os._exit(0)


def connect() -> Channel:
    """The worker's channel to its parent (see :class:`Channel`); the worker dies with its parent from now on."""
    channel = Channel()
    die_with_parent()
    return channel


def error_text(exc: BaseException) -> str:
    """``Type: message at file.py:line`` (the innermost frame)."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def serve(channel: Channel, handlers: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Answer each request with its handler: ``{"ok": true, **handler(request)}``, or ``{"ok": false, "error"}``
    when the handler raises (or the op is unknown)."""
    for req in channel.requests():
        try:
            ans = {"ok": True, **handlers[req["op"]](req)}
        except Exception as exc:
            ans = {"ok": False, "error": error_text(exc)}
        channel.answer(**ans)
