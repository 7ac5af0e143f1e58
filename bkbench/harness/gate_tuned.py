"""The gate's checks of tuned launch configurations: the ``extra_checks`` of ``triton_fused``'s registry record.

``triton_fused`` ships launch configurations per shape bucket (the packaged table for a known GPU, and the
user's tuning cache), and the battery's shapes do not reach most of them. :func:`check_tuned_configs` runs every
distinct configuration either would hand the kernel on this device at its bucket's longest N and at the odd N
just below, against float64. :func:`gate_checks` is what the gate calls for a record that names it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bkbench.harness.gate_result import GateResult

TUNED_FWD_TOL = 2e-4  # the tuner's own acceptance bounds (bkbench.harness.tuning): G, and S of the backward
TUNED_BWD_TOL = 1e-3
IMPL = "triton_fused"  # the implementation whose tables bkbench.harness.tuning reads and whose configs these are


def tuned_entries(device: str) -> dict[str, dict[str, Any]]:
    """The entries that ``tuning.lookup`` can hand ``triton_fused`` on ``device``: the packaged table of this
    GPU, overridden by the user's tuning cache, keyed ``gpu|dtype|scalar or k|N<n>_E<elements>``."""
    from bkbench.harness import tuning

    gpu = tuning.gpu_name(device)  # "cpu-interpreter" off the GPU
    entries = {**tuning.packaged_table(gpu), **tuning.load_cache()}
    return {k: v for k, v in entries.items() if k.split("|")[0] == gpu}


@dataclass(frozen=True)
class TunedCheck:
    """One tuned-config check: the table key it came from, forward or backward, the config, the chain length."""

    key: str
    dtype: str
    coupling: str  # "k" or "scalar"
    bucket: str
    bwd: bool
    config: dict[str, int]
    n: int
    impl: str = IMPL

    @property
    def case(self) -> str:
        return f"tuned {'backward' if self.bwd else 'forward'} config, {self.coupling} coupling, N={self.n}"

    def failed(self, detail: str = "", tolerance: float | None = None) -> GateResult:
        """A ``fail`` result of this check (filled in further by whoever runs it)."""
        return GateResult(self.impl, self.case, self.key, "grad" if self.bwd else "value", "fail",
                          tolerance=tolerance, detail=detail)


def tuned_checks(entries: dict[str, dict[str, Any]], quick: bool = False,
                 impl: str = IMPL) -> tuple[list[TunedCheck], list[GateResult]]:
    """The distinct checks of ``entries`` (forward and backward config of each entry at N = the bucket's top and
    top - 1; ``quick``: only top - 1; a config met again at the same dtype, coupling and N is checked once), and
    a failure per malformed key."""
    seen: set[tuple[Any, ...]] = set()
    checks: list[TunedCheck] = []
    bad: list[GateResult] = []
    for key in sorted(entries):
        entry = entries[key]
        try:
            _, dtype_name, coupling, bucket = key.split("|")
            top = int(bucket.split("_")[0][1:])
        except ValueError:
            bad.append(GateResult(impl, "tuned configs", key, "value", "fail",
                                  detail="malformed table key (expected gpu|dtype|scalar or k|N<n>_E<elements>)"))
            continue
        for bwd, field_name in ((False, "config"), (True, "bwd_config")):
            if field_name not in entry:
                continue
            for n in sorted({max(1, top - 1)} if quick else {top, max(1, top - 1)}):
                ident = (dtype_name, coupling, n, bwd, json.dumps(entry[field_name], sort_keys=True))
                if ident not in seen:
                    seen.add(ident)
                    checks.append(TunedCheck(key, dtype_name, coupling, bucket, bwd, entry[field_name], n, impl))
    return checks, bad


def run_tuned_check(check: TunedCheck, device: str) -> GateResult:
    """Run one :class:`TunedCheck` (``tuning._check`` on 4 chains); never raises."""
    from bkbench.harness import tuning

    tol = TUNED_BWD_TOL if check.bwd else TUNED_FWD_TOL
    res = check.failed(tolerance=tol)
    cfg_json = json.dumps(check.config, sort_keys=True)
    t0 = time.perf_counter()
    try:
        from bkbench.kernels.bk import triton_fused as tf

        cfg = (tf.BwdConfig if check.bwd else tf.FusedConfig).from_dict(check.config)
        prob = tuning.TuneProblem(batch=4, n=check.n, dtype=getattr(torch, check.dtype),
                                  uniform=check.coupling == "scalar", device=device)
        err = tuning._check(cfg, prob, bwd=check.bwd)
        res.error = err
        res.status = "pass" if math.isfinite(err) and err <= tol else "fail"
        res.detail = "" if res.status == "pass" else f"error {err:.2e} > {tol:.0e}; {cfg_json}"
    except Exception as exc:
        res.detail = f"{type(exc).__name__}: {exc}; {cfg_json}"
    res.seconds = time.perf_counter() - t0
    return res


def check_tuned_configs(device: str, quick: bool = False, entries: dict[str, dict[str, Any]] | None = None,
                        progress: Callable[[str, str], None] | None = None, jobs: int = 1,
                        impl: str = IMPL) -> list[GateResult]:
    """Gate every distinct forward and backward configuration of ``entries`` (default :func:`tuned_entries`)
    on 4 chains at N = the bucket's top and top - 1 (``quick``: only top - 1), with that entry's dtype and
    coupling kind: G against the float64 pivot form, the backward's S against the float64 F/R recurrences
    (``tuning._check``), within :data:`TUNED_FWD_TOL` / :data:`TUNED_BWD_TOL`.

    Each check compiles its kernels (8-47 s on the H100 host), so ``jobs`` > 1 runs the checks in that many
    worker processes at once (:func:`_in_workers`; they share the GPU; the checks are 4 chains each).
    ``progress(impl, case name)`` is called before each check (``jobs`` = 1) or as each one finishes. Results
    (rows of ``impl``) come in the order of :func:`tuned_checks`."""
    if entries is None:
        entries = tuned_entries(device)
    checks, out = tuned_checks(entries, quick, impl)
    label = [f"{c.case} [{c.bucket}]" for c in checks]
    if jobs <= 1 or len(checks) <= 1:
        for i, c in enumerate(checks):
            if progress:
                progress(impl, label[i])
            out.append(run_tuned_check(c, device))
        return out
    return out + _in_workers(checks, device, min(jobs, len(checks)), impl, label, progress)


def _in_workers(checks: list[TunedCheck], device: str, jobs: int, impl: str, label: list[str],
                progress: Callable[[str, str], None] | None) -> list[GateResult]:
    """``checks`` in ``jobs`` worker processes of the runner (:class:`bkbench.harness.pool.WorkerHandle`, request
    ``tuned``), each taking the next check when it is done; results in the order of ``checks``. A worker that dies
    fails its check (``worker process: ...``; its log is kept and named) and a fresh one takes the next."""
    import queue
    import shutil
    import tempfile
    import threading
    from dataclasses import asdict
    from pathlib import Path

    from bkbench.harness.pool import WorkerHandle

    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(checks)):
        todo.put(i)
    finished: queue.Queue[tuple[int, GateResult]] = queue.Queue()
    logs = Path(tempfile.mkdtemp(prefix="bkbench-gate-tuned-"))
    workers = [WorkerHandle(f"tuned{k}", device, None, [], logs, measure_bandwidth=False) for k in range(jobs)]
    failed = False

    def serve(w: WorkerHandle) -> None:
        nonlocal failed
        try:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    res = GateResult(**w.ask("tuned", check=asdict(checks[i]), device=device)["result"])
                except Exception as exc:  # the worker died (run_tuned_check itself never raises)
                    failed = True
                    res = checks[i].failed(f"worker process: {type(exc).__name__}: {exc} (worker logs: {logs})")
                finished.put((i, res))
        finally:
            w.stop()

    for w in workers:
        threading.Thread(target=serve, args=(w,), daemon=True).start()
    done: list[GateResult | None] = [None] * len(checks)
    try:
        for _ in checks:
            i, res = finished.get()
            done[i] = res
            if progress:
                progress(impl, f"{label[i]}: {res.status}")
    except BaseException:  # Ctrl-C: no worker outlives this
        for w in workers:
            w.kill()
        raise
    if not failed:
        shutil.rmtree(logs, ignore_errors=True)
    return [r for r in done if r is not None]


def gate_checks(rec: Any, device: str, *, quick: bool = False, progress: Callable[[str, str], None] | None = None,
                jobs: int = 1) -> list[GateResult]:
    """The ``extra_checks`` entry point (see :class:`bkbench.registry.Implementation`): :func:`check_tuned_configs`
    of this device's entries, as rows of ``rec``."""
    return check_tuned_configs(device, quick, progress=progress, jobs=jobs, impl=rec.name)
