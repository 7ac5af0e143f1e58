"""Compile a suite's kernels ahead of a timed run (``bkbench warm``).

Triton compiles a kernel on its first call, and an autotuned kernel (fla-core's GLA and SSD) compiles every
configuration of its search space, one after another: 100-220 s per (implementation, width, dtype, mode) on
the H100 host, spent inside the timed run's worker and against its per-case timeout. The compiled binaries go
to Triton's on-disk cache (``TRITON_CACHE_DIR``, default ``~/.triton/cache``) and depend on the kernel's
constexpr arguments (head sizes, block sizes), not on the sequence length.

So :func:`warm` takes the selected cases, keeps the smallest-N case of every distinct (implementation, mode,
dtype, batch, d, sparsity, options), and runs each of those once, in parallel processes (``jobs`` at a time,
each with its own timeout). The timed run that follows finds every binary in the cache and only benchmarks
the autotuning candidates.

The warm processes share the GPU, so the autotuning choices they make are not to be kept: they run with
``FLA_CACHE_RESULTS=0`` and ``TRITON_CACHE_AUTOTUNING=0`` (no autotuning results on disk), and the timed run
makes its own choices on a quiet GPU. Nothing is written to the results database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bkbench.suites import CaseSpec


@dataclass(frozen=True)
class WarmResult:
    """One warm process: the case it ran, ``status`` ok / skipped / error / timeout, wall seconds, detail."""

    impl: str
    mode: str
    case_key: str
    status: str
    seconds: float
    detail: str = ""


def representatives(cases: Sequence[CaseSpec]) -> list[CaseSpec]:
    """The smallest-N case of every distinct (impl, mode, dtype, batch, d, sparsity, options), in plan order.
    Cases the plan already skips (``skip_reason``) compile nothing and are left out."""
    best: dict[tuple, CaseSpec] = {}
    for c in cases:
        if c.skip_reason:
            continue
        key = (c.impl, c.mode, c.dtype, c.batch, c.d, c.sparsity, c.options_json)
        if key not in best or c.n < best[key].n:
            best[key] = c
    return list(best.values())


def _child_env(device: str, plugins: Sequence[str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FLA_CACHE_RESULTS="0", TRITON_CACHE_AUTOTUNING="0", BKBENCH_DEVICE=device,
               BKBENCH_PLUGINS=",".join(plugins))
    return env


def _run_one(spec: CaseSpec, plugins: Sequence[str], timeout_s: float) -> WarmResult:
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "bkbench.warm", json.dumps(spec.to_dict())]
    try:
        proc = subprocess.run(cmd, env=_child_env(spec.device, plugins), capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return WarmResult(spec.impl, spec.mode, spec.case_key, "timeout", time.monotonic() - t0,
                          f"not done within {timeout_s:g} s; process killed")
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    try:
        msg = json.loads(last)
    except json.JSONDecodeError:
        msg = {"status": "error", "detail": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-400:]}"}
    return WarmResult(spec.impl, spec.mode, spec.case_key, msg.get("status", "error"), time.monotonic() - t0,
                      msg.get("detail", ""))


def warm(cases: Sequence[CaseSpec], *, jobs: int = 4, timeout_s: float = 600.0, plugins: Sequence[str] = (),
         on_done: Callable[[WarmResult], None] = lambda r: None) -> list[WarmResult]:
    """Run :func:`representatives` of ``cases`` once each, ``jobs`` processes at a time. Returns one
    :class:`WarmResult` per representative (a failure is reported, never raised: the timed run will record
    the case's error properly)."""
    if jobs < 1:
        raise ValueError(f"jobs: {jobs} must be >= 1")
    reps = representatives(cases)
    results: list[WarmResult] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for r in pool.map(lambda c: _run_one(c, plugins, timeout_s), reps):
            on_done(r)
            results.append(r)
    return results


def _child(spec_json: str) -> dict[str, str]:
    """In the warm process: prepare the case's workload and call it once (forward, or forward + backward)."""
    import torch

    from bkbench.runner import registry_with
    from bkbench.workloads import Skip, prepare

    spec = CaseSpec.from_dict(json.loads(spec_json))
    plugins = [p for p in os.environ.get("BKBENCH_PLUGINS", "").split(",") if p]
    try:
        wl = prepare(spec, registry_with(plugins))
        wl.fn()
        if spec.device == "cuda":
            torch.cuda.synchronize()
    except Skip as exc:
        return {"status": "skipped", "detail": str(exc)[:400]}
    except Exception as exc:
        return {"status": "error", "detail": f"{type(exc).__name__}: {exc}"[:400]}
    return {"status": "ok", "detail": ""}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1])), flush=True)
