"""The worker process of the suite runner: ``python -m bkbench.harness.worker`` (started by
:mod:`bkbench.harness.runner`).

It runs cases one at a time and answers each with one result row, so that whatever a case does — an illegal
memory access, a segfault, a hang, an OOM — costs at most this process, never the run. Protocol:
:mod:`bkbench.harness.worker_protocol` (JSON lines; the parent is :class:`bkbench.harness.pool.WorkerHandle`):

    parent -> worker (stdin):             {"op": "case" | "warm", "spec": {...CaseSpec...}} | {"op": "exit"}
    worker -> parent (fd $BKBENCH_WORKER_FD): {"op": "hello", "pid", "env"} once, then per case
                                          {"op": "progress", "stage"} ... {"op": "answer", "row", "fatal"}

The worker's stdout/stderr go to a log file chosen by the parent (a kernel's prints cannot corrupt the
protocol). After a sticky CUDA error the worker answers and exits, and the parent starts a fresh one.
``"warm"`` only prepares the case and calls it once (:func:`warm_case`; the warm-up of :mod:`bkbench.harness.warm`);
``{"op": "tuned", "check", "device"}`` runs one of the gate's tuned-config checks (:func:`tuned_check`; answer
``{"result", "fatal"}``).

Steps of one case (:func:`run_case`): prepare (inputs, normalisation, models; untimed) -> first call
(compile / autotune; its wall time is recorded as ``first_call_s``) -> correctness check (an incorrect case
gets no speed) -> peak memory (:mod:`bkbench.harness.memory`; one synchronised call whose wall time also lets a long
call skip the timing warm-up) -> timing (:mod:`bkbench.harness.timing`) -> energy (only when the suite asks;
:mod:`bkbench.harness.energy`) -> metrics (:mod:`bkbench.harness.metrics`).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STICKY_MARKERS = (
    "illegal memory access", "device-side assert", "unspecified launch failure", "misaligned address",
    "illegal instruction", "an illegal", "CUDA error: launch failure", "uncorrectable ECC", "Xid",
)


def _short_tb(exc: BaseException, limit: int = 400) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg[:limit]}{where}"


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom_cls = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    text = str(exc)
    return "out of memory" in text.lower() or "can't allocate memory" in text


def cuda_broken(exc: BaseException | None = None) -> bool:
    """True when the CUDA context can no longer be used (sticky error): the worker must restart."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return False
    if exc is not None:
        text = str(exc)
        acc = getattr(torch, "AcceleratorError", None)
        if (acc is not None and isinstance(exc, acc)) or any(m in text for m in STICKY_MARKERS):
            return True
    try:
        torch.cuda.synchronize()
        torch.empty(1, device="cuda").add_(1)
        torch.cuda.synchronize()
    except Exception:
        return True
    return False


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_case(spec: Any, registry: Any, stage: Callable[[str], None] = lambda s: None,
             copy_bandwidth_gbs: float | None = None) -> tuple[dict[str, Any], bool]:
    """Run one case; returns (row for the results store, fatal). Never raises."""
    from bkbench.harness import metrics
    from bkbench.harness.energy import EnergyConfig, measure_energy
    from bkbench.harness.memory import peak_memory
    from bkbench.harness.timing import TimingConfig, measure
    from bkbench.harness.usercall import kernel_metrics
    from bkbench.harness.workloads import Skip, prepare

    t_case = time.perf_counter()
    row: dict[str, Any] = spec.identity()
    extra: dict[str, Any] = {}
    fatal = False
    current = "prepare"

    def enter(name: str) -> None:
        nonlocal current
        current = name
        stage(name)

    wl = None
    try:
        if spec.skip_reason:
            raise Skip(spec.skip_reason)
        enter("prepare")
        wl = prepare(spec, registry)
        extra["workload"] = wl.info
        extra["model_note"] = wl.model.note
        enter("first call")
        t0 = time.perf_counter()
        out = wl.fn()
        _sync(spec.device)
        extra["first_call_s"] = time.perf_counter() - t0
        del out
        enter("check")
        chk = wl.check()
        ctx = metrics.MetricContext(check=chk, model=wl.model, copy_bandwidth_gbs=copy_bandwidth_gbs,
                                    device=spec.device)
        if not chk.passed:
            row.update(status="incorrect", reason=chk.detail)
            row.update(metrics.compute(ctx, ["accuracy"]))
        else:
            # one synchronised call: peak memory, and the per-call estimate that lets long calls skip warm-up
            enter("memory")
            t0 = time.perf_counter()
            if spec.memory:
                ctx.memory = peak_memory(wl.fn, spec.device)
            else:
                out = wl.fn()
                _sync(spec.device)
                del out
            per_call = time.perf_counter() - t0
            enter("timing")
            mode = "cpu" if spec.device == "cpu" else spec.timing
            cfg = TimingConfig(mode=mode, warmup_s=spec.warmup_s, budget_s=spec.budget_s, rel_ci=spec.rel_ci,
                               min_reps=spec.min_reps, max_reps=spec.max_reps, min_reps_long=spec.min_reps_long,
                               min_warmup_calls=0, per_call_hint_s=per_call)
            try:
                ctx.timing = measure(wl.fn, cfg, spec.device)
            except Exception as exc:
                if mode != "graph" or is_oom(exc):
                    raise
                if cuda_broken(exc):
                    fatal = True
                    raise
                raise Skip(f"not capturable in a CUDA graph: {_short_tb(exc)}") from None
            if spec.energy:
                enter("energy")
                ctx.energy = measure_energy(
                    wl.fn, device=spec.device, per_call_s=ctx.timing.median, elements=wl.model.elements,
                    tokens=wl.model.tokens, cfg=EnergyConfig(**spec.energy),
                )
            row.update(metrics.compute(ctx))
            if wl.kernel is not None:  # BK-core: the bare kernel under the timed user call (kernel_* metrics)
                enter("kernel timing")
                row.update(kernel_metrics(wl, cfg, spec.device, copy_bandwidth_gbs))
            row.update(metrics.row_status(ctx))  # ok, or implausible: faster than the physical floor
    except Skip as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:
        if is_oom(exc):
            row.update(status="oom", reason=f"during {current}: {_short_tb(exc)}")
        else:
            row.update(status="crash", reason=f"during {current}: {_short_tb(exc)}")
            extra["traceback"] = traceback.format_exc()[-4000:]
        fatal = fatal or cuda_broken(exc)
    finally:
        wl = None
        fatal = _release(spec.device, fatal)
    extra["stage"] = current
    row.update(extra)
    row["wall_s"] = time.perf_counter() - t_case
    return row, fatal


def _release(device: str, fatal: bool) -> bool:
    """After a case: collect its workload's memory and return the CUDA cache; True (fatal) when the context is
    broken (emptying the cache fails) or already was."""
    gc.collect()
    if device == "cuda" and torch.cuda.is_available() and not fatal:
        try:
            torch.cuda.empty_cache()
        except Exception:
            return True
    return fatal


def warm_case(spec: Any, registry: Any, stage: Callable[[str], None] = lambda s: None) -> tuple[dict[str, Any], bool]:
    """Prepare one case and make once each call that its timed run compiles (forward, or forward + backward),
    for the warm-up: Triton compiles and autotunes on those calls and writes its binaries to its on-disk cache.
    The calls are the timed one and, for a BK-core case, the bare kernel under it (``wl.kernel``: the check and
    the ``kernel_*`` metrics call it on prepared inputs, a specialisation of its own; on the H200 it took 21 s of
    compilation inside a timed worker when only the user call was warmed). Returns (row, fatal); the row has
    ``status`` ok / skipped / oom / crash, ``reason`` and ``compile_s`` (the wall time of the calls,
    synchronised). Never raises."""
    from bkbench.harness.workloads import Skip, prepare

    row: dict[str, Any] = spec.identity()
    fatal = False
    current = "prepare"
    wl = None
    try:
        if spec.skip_reason:
            raise Skip(spec.skip_reason)
        stage(current)
        wl = prepare(spec, registry)
        current = "first call"
        stage(current)
        t0 = time.perf_counter()
        out = wl.fn()
        _sync(spec.device)
        del out
        if wl.kernel is not None:
            current = "bare kernel"
            stage(current)
            out = wl.kernel.fn()
            _sync(spec.device)
            del out
        row.update(status="ok", reason=None, compile_s=time.perf_counter() - t0)
    except Skip as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:
        row.update(status="oom" if is_oom(exc) else "crash", reason=f"during {current}: {_short_tb(exc)}")
        fatal = cuda_broken(exc)
    finally:
        wl = None
        fatal = _release(spec.device, fatal)
    row["stage"] = current
    return row, fatal


def tuned_check(check: dict[str, Any], device: str) -> tuple[dict[str, Any], bool]:
    """The worker side of the gate's tuned checks: :func:`bkbench.harness.gate_tuned.run_tuned_check` of ``check`` (a
    :class:`~bkbench.harness.gate_tuned.TunedCheck` as a dict); returns (its GateResult as a dict, fatal)."""
    from dataclasses import asdict

    from bkbench.harness.gate_tuned import TunedCheck, run_tuned_check

    result = asdict(run_tuned_check(TunedCheck(**check), device))
    return result, _release(device, cuda_broken())


def main() -> int:
    from bkbench.harness.worker_protocol import connect

    channel = connect()
    device = os.environ.get("BKBENCH_DEVICE", "cpu")
    plugins = [p for p in os.environ.get("BKBENCH_PLUGINS", "").split(",") if p]
    from bkbench.harness.env import environment
    from bkbench.harness.suites import CaseSpec
    from bkbench.plugins import registry_with

    registry = registry_with(plugins)
    env: dict[str, Any] = {}
    try:
        env = environment(measure_bandwidth=device == "cuda" and os.environ.get("BKBENCH_BANDWIDTH", "1") == "1")
        if device == "cpu" and os.environ.get("BKBENCH_BANDWIDTH", "1") == "1":
            from bkbench.harness.timing import copy_bandwidth

            env["copy_bandwidth_gbs"] = copy_bandwidth("cpu")
            env["copy_bandwidth_note"] = "CPU memcpy, 64 MiB, bytes read + written"
        if device == "cuda" and torch.cuda.is_available():  # which physical GPU this is, whatever its index here
            env["gpu_uuid"] = str(getattr(torch.cuda.get_device_properties(0), "uuid", "") or "") or None
    except Exception as exc:  # the environment must not stop the run; say what failed
        env["environment_error"] = _short_tb(exc)
    if os.environ.get("BKBENCH_COPY_BW"):  # a resumed run reuses the bandwidth measured when it started
        env["copy_bandwidth_gbs"] = float(os.environ["BKBENCH_COPY_BW"])
    env["import_failures"] = [{"module": f.module, "error": f.error} for f in registry.failures]
    channel.hello(env=env)
    bw = env.get("copy_bandwidth_gbs")
    for msg in channel.requests():
        if msg.get("op") == "tuned":  # one of the gate's tuned-config checks (bkbench.harness.gate_tuned)
            result, fatal = tuned_check(msg["check"], msg["device"])
            channel.answer(result=result, fatal=fatal)
            if fatal:
                channel.close()
                os._exit(3)
            continue
        if msg.get("op") not in ("case", "warm"):
            continue
        spec = CaseSpec.from_dict(msg["spec"])
        stage = lambda s: channel.progress(stage=s)  # noqa: E731
        if msg["op"] == "warm":
            row, fatal = warm_case(spec, registry, stage)
        else:
            row, fatal = run_case(spec, registry, stage, bw)
        channel.answer(row=row, fatal=fatal)
        if fatal:
            channel.close()
            os._exit(3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
