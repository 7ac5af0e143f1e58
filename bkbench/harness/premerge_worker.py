"""Timing worker of ``bkbench premerge`` (one process per side: the base commit and the working tree).

Started by :mod:`bkbench.harness.premerge` as::

    cd <tree> && PYTHONPATH=<tree> python -c "<bootstrap>" <this file> [--threads T]

so ``bkbench`` and ``kernels`` are imported from ``<tree>`` (the base export or the working tree), while this
file and the measuring code it loads by path (``benchcase.py``, ``timing.py``, ``benchtimer.py``, siblings of
this file) always come from the working tree: both sides are prepared and timed by identical code.

Protocol: :mod:`bkbench.harness.worker_protocol` (loaded by path from the working tree too): JSON-line requests on
stdin, the hello handshake and the answers on the pipe ``$BKBENCH_WORKER_FD``; stdout and stderr go to the worker's log,
so whatever a kernel prints cannot corrupt the protocol. The requests (answers ``{"op": "answer", "ok", ...}``):

    {"op": "hello"}                                   -> {"ok", "bkbench", "kernels", "impls": [...], "failures"}
    {"op": "prepare", "impl", "batch", "n", "dtype", "device"}
        -> {"ok", "key", "skip", "first_call_s", "per_call_s", "kernel_median_s", "call_ideal_bytes",
            "kernel_ideal_bytes"}
    {"op": "time", "key", "calls"[, "target"]}        -> {"ok", "samples"}  (seconds per call, one per call)
    {"op": "exit"}
Errors answer {"ok": false, "error": "..."}.

What is timed (``target``; :mod:`bkbench.harness.benchcase`): ``"call"`` (the default, what premerge compares) is the
user call ``bkbench.bk_core(a, b, c, z, impl=name)`` on inputs as a user holds them; ``"kernel"`` is the bare
kernel ``rec.fn(a, k, z)`` on prepared inputs. ``prepare`` records the bare kernel once: the median of one
block of per-call samples (``kernel_median_s``), next to the user call's estimate ``per_call_s``.

Per-call samples: ``perf_counter`` around each call on the CPU; on CUDA, events around each of ``calls``
back-to-back calls (the harness's ``warm`` mode), one synchronisation at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load(name: str) -> Any:
    modname = f"_bkbench_tree_{name}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


class Worker:
    def __init__(self) -> None:
        self.cases: dict[str, Any] = {}

    def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        import importlib

        import bkbench
        from bkbench.registry import default_registry

        try:
            kernels = importlib.import_module("bkbench.kernels")
        except ImportError:  # a tree from before the kernels folder was installed as bkbench.kernels
            kernels = importlib.import_module("kernels")

        bc = _load("benchcase")
        reg = default_registry()
        impls = [
            {"name": r.name, "module": r.module, "devices": list(r.devices), "triton": bc.uses_triton(r)}
            for r in reg.implementations("bk")
        ]
        return {"bkbench": str(Path(bkbench.__file__).resolve().parent),
                "kernels": str(Path(kernels.__file__).resolve().parent),
                "impls": impls, "failures": [f"{f.module}: {f.error}" for f in reg.failures]}

    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        bc = _load("benchcase")
        problem = bc.make_problem(int(req["batch"]), int(req["n"]), req["dtype"], req["device"])
        key = f"{req['impl']}:{problem.key}"
        try:
            rec = bc.find(req["impl"])
            t0 = time.perf_counter()
            case = bc.prepare(rec, problem, warm=False)
            case.fn()
            _load("benchtimer").synchronize()
            first = time.perf_counter() - t0
        except bc.Skip as exc:
            return {"key": key, "skip": str(exc)}
        per = self._per_call(case.fn)
        kernel_per = self._per_call(case.kernel_fn)  # the bare kernel's first call and warm-up
        self.cases[key] = case
        kernel = self._samples(case.kernel_fn, case.device, int(min(1000, max(3, 0.05 / max(kernel_per, 1e-9)))))
        return {"key": key, "skip": None, "first_call_s": first, "per_call_s": per,
                "kernel_median_s": statistics.median(kernel), "call_ideal_bytes": case.ideal_bytes,
                "kernel_ideal_bytes": case.kernel_ideal_bytes}

    @staticmethod
    def _per_call(fn: Any) -> float:
        """Mean wall time of ``fn`` over >= 2 back-to-back calls (about 0.05 s), synchronised at the end."""
        t0 = time.perf_counter()
        reps = 0
        while reps < 2 or (time.perf_counter() - t0 < 0.05 and reps < 100):
            fn()
            reps += 1
        _load("benchtimer").synchronize()
        return (time.perf_counter() - t0) / reps

    def time(self, req: dict[str, Any]) -> dict[str, Any]:
        case = self.cases[req["key"]]
        fn = case.callable(req.get("target", "call"))
        return {"samples": self._samples(fn, case.device, max(1, int(req["calls"])))}

    @staticmethod
    def _samples(fn: Any, device: str, calls: int) -> list[float]:
        """Seconds per call of ``calls`` back-to-back calls (CUDA events on the GPU, perf_counter on the CPU)."""
        if device == "cuda":
            import torch

            starts = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]
            torch.cuda.synchronize()
            for i in range(calls):
                starts[i].record()
                fn()
                ends[i].record()
            ends[-1].synchronize()
            samples = [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]
        else:
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
        return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="premerge_worker")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    args = parser.parse_args(argv)
    protocol = _load("worker_protocol")
    channel = protocol.connect()
    channel.hello()
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    worker = Worker()
    protocol.serve(channel, {"hello": worker.hello, "prepare": worker.prepare, "time": worker.time})
    return 0


if __name__ == "__main__":
    sys.exit(main())
