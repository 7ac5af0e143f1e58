"""Device-synchronising wall-clock timer for benchmark frameworks (pytest-benchmark, asv ``time_*``).

A wall-clock timer around GPU work measures only the *launch* unless the device is drained: CUDA calls return
as soon as the kernel is queued. :func:`timer` therefore waits for every queued CUDA kernel and then reads
``time.perf_counter``. Used as the start and the end of a timed region it brackets all work launched in
between, so a framework that times ``k`` back-to-back calls between two timer reads gets the true device time
of the ``k`` calls plus one synchronisation::

    pytest --benchmark-only -p no:xdist --benchmark-timer=bkbench.harness.benchtimer.timer
    class Bench:  # asv
        timer = staticmethod(bkbench.harness.benchtimer.timer)

On a machine without CUDA (or before CUDA is initialised in this process) it is ``time.perf_counter``.

This module depends on torch and the standard library only: the asv suite loads it by path from the
working tree while it benchmarks historic commits whose ``bkbench`` may predate it.
"""

from __future__ import annotations

import time

import torch


def cuda_active() -> bool:
    """True when this process has initialised CUDA (so there may be queued GPU work to wait for)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def synchronize() -> None:
    """Wait for all queued work on every initialised CUDA device of this process; no-op on the CPU."""
    if cuda_active():
        torch.cuda.synchronize()


def timer() -> float:
    """Seconds (``time.perf_counter``) read after all queued CUDA work has finished."""
    synchronize()
    return time.perf_counter()
