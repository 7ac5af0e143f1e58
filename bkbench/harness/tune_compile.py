"""Compile the tuner's candidate configs in parallel processes before it times them (``bkbench tune --jobs``).

On a machine with an empty Triton cache, compiling one ``triton_fused`` config takes seconds to tens of seconds
(21-50 s for the first on the H200, about 12 s each after), one after another inside the tuner: one (dtype,
coupling) problem's 13 forward and 12 backward candidates cost minutes before anything is timed. Here each stage's
candidates, over every problem of the run, are launched once each in a pool of spawned processes; the binaries land
in Triton's on-disk cache (``TRITON_CACHE_DIR``), which the tuner's process then reads. The timing itself stays in
the one process, on a quiet GPU.

A job is one launch at the problem's own shape and dtype (the plan, and so the kernel, depends on both; Triton
specialises on the integer arguments too), with inputs made on the device without the host's random generator:
a = -2, k = 1 (well conditioned; nothing is checked here). The pool is sized to the free GPU memory.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from bkbench.harness import tuning

# (kind "fwd" | "bwd", config dict, batch, n, dtype name, uniform coupling, device)
Job = tuple[str, tuple[tuple[str, int], ...], int, int, str, bool, str]
BYTES_PER_ELEMENT = 48  # a, k, G, and for the backward the cotangent and the result: bytes per (B, N) element


def job(kind: str, cfg: dict[str, int], prob: tuning.TuneProblem) -> Job:
    """The job that compiles ``cfg`` for ``prob`` (hashable: duplicates are compiled once)."""
    return (kind, tuple(sorted(cfg.items())), prob.batch, prob.n, str(prob.dtype).replace("torch.", ""),
            prob.uniform, prob.device)


def compile_job(j: Job) -> str | None:
    """Worker: launch one config once (so its binary lands in the cache); None, or the error as text."""
    from bkbench.kernels.bk import triton_fused as tf

    kind, items, batch, n, dtype_name, uniform, device = j
    try:
        a, k, z = tuning.TuneProblem(batch, n, getattr(torch, dtype_name), uniform, device).inputs(random=False)
        cfg = dict(items)
        if kind == "fwd":
            tf.forward(a, k, z, config=tf.FusedConfig.from_dict(cfg))
        else:
            g = tf.forward(a, k, z, config=tf.FusedConfig())
            tf.vjp(a, k, z, g, torch.ones_like(g), config=tf.BwdConfig.from_dict(cfg))
        if a.is_cuda:
            torch.cuda.synchronize(a.device)
        return None
    except Exception as exc:  # reported by the parent; the tuner then meets (and skips) the config itself
        return f"{kind} {dict(items)} at {batch}x{n} {dtype_name}: {type(exc).__name__}: {str(exc)[:300]}"


def pool_size(jobs: Sequence[Job], requested: int) -> int:
    """At most ``requested`` workers, fewer when the largest job times that many would not fit in 60 % of the
    free GPU memory (every worker also holds its own CUDA context, ~0.5 GiB)."""
    if not jobs:
        return 0
    largest = max(b * n for _, _, b, n, *_ in jobs) * BYTES_PER_ELEMENT + (1 << 29)
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        requested = min(requested, max(1, int(0.6 * free // largest)))
    return max(1, min(requested, len(jobs)))


def precompile(jobs: Iterable[Job], workers: int, log: Callable[[str], None] = print,
               cpu_jobs_too: bool = False) -> list[str]:
    """Compile every distinct job in ``workers`` spawned processes; the errors (a config that does not compile).
    Nothing to do with ``workers`` <= 1, or for jobs on the CPU (the interpreter compiles nothing) unless
    ``cpu_jobs_too`` (the tests' way to run the pool without a GPU)."""
    uniq = [j for j in dict.fromkeys(jobs) if cpu_jobs_too or not j[-1].startswith("cpu")]
    if workers <= 1 or not uniq:
        return []
    size = pool_size(uniq, workers)
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=size, mp_context=mp.get_context("spawn")) as pool:
        errors = [e for e in pool.map(compile_job, uniq) if e]
    log(f"  compiled {len(uniq)} config(s) in {size} processes in {time.monotonic() - t0:.0f} s"
        f"{f' ({len(errors)} failed)' if errors else ''}")
    return errors


def tune_many(probs: Sequence[tuning.TuneProblem], *, workers: int, budget_s: float = 0.2, with_bwd: bool = True,
              log: Callable[[str], None] = print, save: bool = True
              ) -> Iterator[tuple[tuning.TuneProblem, dict[str, Any]]]:
    """:func:`bkbench.harness.tuning.tune` for several problems, stage by stage: each stage's candidates of every
    problem compiled in parallel first (:func:`precompile`), then timed one problem after another. Yields (problem,
    entry) in the order of ``probs`` as each finishes (cached when ``save``), so a caller can keep them as they come."""
    tuners = [tuning.Tuner(p, budget_s, log) for p in probs]
    for _ in range(2):
        precompile((job("fwd", c, t.prob) for t in tuners
                    for c in tuning.distinct(t.candidates(), t.prob.batch, t.prob.n)), workers, log)
        for t in tuners:
            t.measure()
    if with_bwd:
        precompile((job("bwd", c, t.prob) for t in tuners for c in tuning.bwd_space()), workers, log)
    for t in tuners:
        if with_bwd:
            t.measure_bwd()
        yield t.prob, t.finish(save=save)


def exhaustive(prob: tuning.TuneProblem, *, workers: int, budget_s: float = 0.2,
               log: Callable[[str], None] = print) -> dict[str, float]:
    """:func:`bkbench.harness.tuning.exhaustive` with the space compiled in parallel first."""
    precompile((job("fwd", c, prob) for c in tuning.distinct(tuning.fwd_space(), prob.batch, prob.n)), workers, log)
    return tuning.exhaustive(prob, budget_s=budget_s)
