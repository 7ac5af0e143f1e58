"""Opt-in tuning of ``triton_fused`` on first use, bounded in time and cached.

A GPU without a packaged table of its own runs the table of the nearest known GPU, or the built-in defaults
(``bkbench.kernels.bk._triton_fused_tables``). ``bkbench tune`` measures a full staged search ahead of time; this module
offers the same search at the first call of each new (GPU, dtype, coupling kind, shape bucket), for users who
would rather pay a bounded pause once than run a separate command::

    import bkbench.harness.first_use_tuning as fut
    fut.enable(budget_s=60)        # before the model's first bk_core call
    ...                            # the first call of each new bucket tunes it (at most ~60 s), later calls
                                   # and later processes read the entry from the user cache
    fut.disable()

What one first-use tuning does, on the call's own device and shape:
- measures the configs the call would have run (the fallback) first, so the pick is never slower than them;
- then the staged forward search (:class:`bkbench.harness.tuning.Tuner`) and, if time is left, the backward grid;
  no candidate starts after ``budget_s`` (compiling one config can take tens of seconds on a fresh machine);
- checks the winner against the float64 reference (as ``bkbench tune`` does) and stores it in the user cache,
  with ``"source": "first use"``, the budget, how many configs it measured and the fallback's time;
- on any failure, warns once (:class:`~bkbench.kernels.bk._triton_fused_tables.UntunedGpuWarning`) and the call runs the
  fallback. A bucket is tried at most once per process; nothing is tuned while a CUDA graph is being captured.

``bkbench explain-auto`` shows whether an entry came from first use and how much of the space it searched.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from bkbench.harness import tuning
from bkbench.kernels.bk import _triton_fused_tables as tables

DEFAULT_BUDGET_S = 60.0
PER_CONFIG_BUDGET_S = 0.1  # timing budget of one measured config (the tuner's budget_s)


def enable(budget_s: float = DEFAULT_BUDGET_S, with_bwd: bool = True,
           log: Callable[[str], None] | None = None) -> None:
    """Tune each new bucket of ``triton_fused`` on its first call in this process, for at most about
    ``budget_s`` seconds (plus the float64 check of the winner); ``with_bwd`` also searches the backward
    configs if time is left; ``log`` receives the tuner's progress lines (default: none)."""
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s > 0:
        raise ValueError(f"budget_s: need a positive number of seconds, got {budget_s!r}")

    def tuner(device: torch.device, dtype: torch.dtype, scalar: bool, batch: int, n: int) -> None:
        tune_bucket(device, dtype, scalar, batch, n, budget_s=float(budget_s), with_bwd=with_bwd, log=log)

    tables.set_first_use_tuner(tuner)


def disable() -> None:
    """Stop tuning on first use (entries already in the user cache stay and are used)."""
    tables.set_first_use_tuner(None)


def enabled() -> bool:
    return tables.first_use_tuner() is not None


def tune_bucket(device: torch.device, dtype: torch.dtype, scalar: bool, batch: int, n: int, *, budget_s: float,
                with_bwd: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Search configs for one (batch, n) problem on ``device`` within ``budget_s`` and store the winner in the
    user cache; the stored entry, or None (with a warning) when the search failed."""
    start = time.monotonic()
    fallback = tables.explain(device, dtype, scalar, batch, n)
    prob = tuning.TuneProblem(batch, n, dtype, scalar, device=str(device))
    fwd_first, bwd_first = fallback.fwd.to_dict(), fallback.bwd.to_dict()
    search = tuning.Tuner(prob, PER_CONFIG_BUDGET_S, log, deadline=start + budget_s, first=[fwd_first],
                          bwd_first=[bwd_first])
    try:
        for _ in range(2):
            search.measure()
        if with_bwd:
            search.measure_bwd()
        entry = search.finish(save=False)
    except Exception as exc:  # a failed search must not fail the user's call: it runs the fallback
        warnings.warn(f"triton_fused: tuning {fallback.key} on first use failed ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); the call runs {fallback.source}", tables.UntunedGpuWarning, stacklevel=2)
        return None
    if "bwd_config" not in entry:  # backward not measured in time: keep the fallback's, not the defaults
        entry["bwd_config"] = bwd_first
    entry.update({
        "source": "first use",
        "budget_s": budget_s,
        "wall_s": round(time.monotonic() - start, 1),
        "deadline_reached": search.truncated,
        "fallback": fallback.source,
        "fallback_ms": search.results.get(json.dumps(fwd_first, sort_keys=True)),
    })
    tuning.save_entry(tuning.key(tuning.gpu_name(device), dtype, scalar, batch, n), entry)
    return entry
