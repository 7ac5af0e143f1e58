"""Compile a run's kernels before any of them is timed: the warm-up of ``bkbench run`` and ``bkbench warm``.

Triton compiles a kernel on its first call, and an autotuned kernel (fla-core's GLA and SSD) compiles every
configuration of its search space, one after another: 35-220 s per (implementation, width, dtype, mode) on
the H100 and H200 hosts, single-threaded, spent inside the timed run's worker when nothing was warmed. The
binaries go to Triton's on-disk cache (``TRITON_CACHE_DIR``, default ``~/.triton/cache``; FlexAttention's
through torch.compile's caches under ``TORCHINDUCTOR_CACHE_DIR``), which every process of the host with the
same environment reads, so the timed workers find them there.

:func:`warm` groups the cases into kernels (:func:`kernel_key`: implementation, mode, dtype, batch, d,
sparsity, options — everything but N), and runs each kernel's cases in order of N, prepare + one call each
(a BK-core case also calls its bare kernel once: the timed run's check and ``kernel_*`` metrics call it),
in a pool of persistent worker processes (``op="warm"`` of :mod:`bkbench.harness.worker`), as many as the host has
cores to compile with (:func:`default_jobs`), spread over the GPUs. Every case is warmed, not one N per
kernel: several kernels are specialised on N (block sizes, FlexAttention's shapes); a case whose code is
already cached costs one call. Kernels that compile heavily (fla-core, FlexAttention) start first. A kernel
whose case crashes or times out is not warmed further (the timed run records its failure properly).

The warm processes share the GPU, so the autotuning choices they make are not kept: they run with
``FLA_CACHE_RESULTS=0`` and ``TRITON_CACHE_AUTOTUNING=0``, and the timed worker benchmarks the candidate
configurations again, from cached binaries, on a quiet GPU (seconds instead of minutes). Each case's
``compile_s`` (the wall time of its warm call: compilation, autotuning, one call) is stored with its timed
row; nothing of the warm-up enters the timed samples. On the CPU there is nothing to compile (Triton kernels
run in its interpreter, FlexAttention eagerly): :func:`needs_warm` is false and ``bkbench run`` skips it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bkbench.harness.suites import CaseSpec

WARM_ENV = {"FLA_CACHE_RESULTS": "0", "TRITON_CACHE_AUTOTUNING": "0"}
MIN_TIMEOUT_S = 300.0  # a warm call compiles every autotuning candidate: give it at least this


@dataclass(frozen=True)
class WarmResult:
    """One warmed case: ``status`` ok / skipped / oom / crash / timeout, ``seconds`` (its warm call's wall
    time, ``compile_s``; 0 when it did not complete), ``detail`` (why not ok)."""

    impl: str
    mode: str
    case_key: str
    case_id: str
    status: str
    seconds: float
    detail: str = ""


def kernel_key(case: CaseSpec) -> tuple:
    """What a case shares with the other Ns of the same kernel: (impl, mode, dtype, batch, d, sparsity, options)."""
    return (case.impl, case.mode, case.dtype, case.batch, case.d, case.sparsity, case.options_json)


def kernels(cases: Sequence[CaseSpec]) -> list[list[CaseSpec]]:
    """The cases grouped by :func:`kernel_key`, each group in order of N, groups in plan order. Cases the plan
    skips (``skip_reason``) compile nothing and are left out."""
    groups: dict[tuple, list[CaseSpec]] = {}
    for c in cases:
        if not c.skip_reason:
            groups.setdefault(kernel_key(c), []).append(c)
    return [sorted(g, key=lambda c: c.n) for g in groups.values()]


def needs_warm(cases: Sequence[CaseSpec]) -> bool:
    """True when some case runs on CUDA (on the CPU nothing compiles: Triton's interpreter, eager FlexAttention)."""
    return any(c.device == "cuda" and not c.skip_reason for c in cases)


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, which SLURM and taskset restrict), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_jobs(n_kernels: int) -> int:
    """Warm processes: one per core but one (compilation is single-threaded per kernel), at most one per kernel."""
    return max(1, min(n_kernels, available_cores() - 1))


def _heavy_first(groups: list[list[CaseSpec]], plugins: Sequence[str]) -> list[list[CaseSpec]]:
    """Kernels declared ``heavy_compile`` (fla-core, FlexAttention) first, then fwd+bwd before fwd: the long
    compilations start while the short ones fill the other processes."""
    from bkbench.baseline_meta import META_ATTR
    from bkbench.plugins import registry_with

    reg = registry_with(plugins)
    names = {r.name: r for r in reg.implementations(None)}

    def heavy(g: list[CaseSpec]) -> bool:
        rec = names.get(g[0].impl)
        return bool(getattr(getattr(rec.fn, META_ATTR, None), "heavy_compile", False)) if rec else False

    return sorted(groups, key=lambda g: (not heavy(g), g[0].mode != "fwd+bwd"))


def warm(cases: Sequence[CaseSpec], *, jobs: int | None = None, devices: Sequence[int | str] | None = None,
         timeout_s: float | None = None, plugins: Sequence[str] = (), log_dir: str | Path | None = None,
         console: Any = None, progress: bool = False,
         on_done: Callable[[WarmResult], None] = lambda r: None) -> list[WarmResult]:
    """Warm every case of ``cases`` (see the module docstring) in ``jobs`` worker processes (default
    :func:`default_jobs`), dealt round-robin over the GPU ids ``devices`` (None: the inherited
    ``CUDA_VISIBLE_DEVICES``). ``timeout_s`` per case (default the case's own, at least
    :data:`MIN_TIMEOUT_S`). Returns one :class:`WarmResult` per case, failures included (never raises for a
    case). Worker logs go to ``log_dir``, or to a temporary folder that is removed unless a case crashed or
    timed out (its path is then in the results' detail)."""
    from bkbench.harness.pool import BROKEN_STATUSES, WorkerHandle, drive

    groups = kernels(cases)
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs: {jobs} must be >= 1")
    if not groups:
        return []
    jobs = min(jobs or default_jobs(len(groups)), len(groups))
    groups = _heavy_first(groups, plugins)
    device = groups[0][0].device
    slots = list(devices) if devices else [None]
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="bkbench-warm-"))
    workers = [WorkerHandle(f"warm{i}", device, slots[i % len(slots)], plugins, logs, measure_bandwidth=False,
                            extra_env=WARM_ENV) for i in range(jobs)]
    results: list[WarmResult] = []

    def on_row(row: dict[str, Any]) -> None:
        detail = str(row.get("reason") or "")
        if row["status"] in BROKEN_STATUSES:
            detail += f" (worker logs: {logs})"  # kept: see below
        r = WarmResult(row["impl"], row["mode"], row["case_key"], row["case_id"], row["status"],
                       float(row.get("compile_s") or 0.0), detail)
        results.append(r)
        on_done(r)

    def timeout_of(spec: CaseSpec) -> float:
        return timeout_s if timeout_s is not None else max(spec.timeout_s, MIN_TIMEOUT_S)

    try:
        drive(workers, groups, on_row, op="warm", title="compiling", console=console, show=progress,
              timeout_of=timeout_of, stop_batch_on=BROKEN_STATUSES)
    finally:
        for w in workers:
            w.stop()
        if not log_dir and not any(r.status in BROKEN_STATUSES for r in results):
            shutil.rmtree(logs, ignore_errors=True)
    return results


def compile_columns(results: Sequence[WarmResult]) -> dict[str, dict[str, Any]]:
    """{case_id: the columns a timed row gets from its warm-up}: ``compile_s`` and ``compile_source``
    ("warm-up"), or ``warm_status`` / ``warm_error`` when the warm call did not succeed."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.status == "ok":
            out[r.case_id] = {"compile_s": r.seconds, "compile_source": "warm-up"}
        else:
            out[r.case_id] = {"warm_status": r.status, "warm_error": r.detail[:400]}
    return out


def slowest_kernels(results: Sequence[WarmResult], top: int = 5) -> list[str]:
    """The ``top`` kernels whose warm calls took longest, summed over their cases, as "impl mode: 12.3 s (2 cases)"
    (what to cap or exclude when a warm-up is long)."""
    totals: dict[tuple[str, str], list[float]] = {}
    for r in results:
        totals.setdefault((r.impl, r.mode), []).append(r.seconds)
    ranked = sorted(totals.items(), key=lambda kv: -sum(kv[1]))[:top]
    return [f"{impl} {mode}: {sum(s):.1f} s ({len(s)} case{'s' if len(s) > 1 else ''})" for (impl, mode), s in ranked]


def with_compile_columns(row: dict[str, Any], columns: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``row`` (a timed case's result) with its compile columns: from its warm-up in ``columns`` when that
    succeeded, else the timed worker's first call (``compile_s`` = ``first_call_s``, ``compile_source``
    "first call"; a failed warm-up's ``warm_status`` / ``warm_error`` are kept)."""
    cols = columns.get(row.get("case_id", ""), {})
    row.update(cols)
    if "compile_s" not in cols and row.get("first_call_s") is not None:
        row.update(compile_s=row["first_call_s"], compile_source="first call")
    return row
