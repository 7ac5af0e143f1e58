"""Host cost of the ``bkbench::bk_core`` operators on the CPU, with every Triton launch stubbed out (issue 22).

    TRITON_INTERPRET=1 PYTHONPATH=$PWD python3 bench/op_host_cpu.py [--root DIR] [--stages ops,model]

What this times is the Python around the kernels, which is what a compiled graph in the default mode pays per
operator call: no kernel runs (``triton_fused``'s launches are replaced by a no-op), so the figures are host time on
this machine, not GPU figures. ``--root`` imports ``bkbench`` and ``kernels`` from another checkout (for example a
``git worktree`` of an older commit) so two registrations can be compared on one machine; run the two alternately.

Stages:
- ``ops``: per call, mean of 3000 calls (B = 2, N = 64, float32, b and c (N-1,), z = 1j): the eager
  ``bkbench.bk_core``; ``torch.ops.bkbench.bk_core`` and ``bk_core_backward``; the operators' Python
  implementations called directly (what is left without the dispatch).
- ``model``: one training step of ``bench/compile_model_h200.py``'s 4-block model (B = 2, N = 64, d = 8), eager and
  ``torch.compile(fullgraph=True)`` (default mode), with the BK-core and with the control mixer; mean of 300 steps.
- ``parts``: where the compiled step's BK-core time goes: the time of the operators' eager call (``eager_call``)
  and of the bound backward (``BoundVjp``) inside the compiled step, the same eager call alone with and without
  ``fresh_workspace()``, and the compiled step with the operators' CPU kernels replaced by empty results (the graph
  and the dispatch without the bodies). Run it last: it overrides the operators' CPU kernels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TRITON_INTERPRET", "1")


def _stub_launches() -> None:
    import bkbench.kernels.bk._triton_fused_bound as bound
    import bkbench.kernels.bk._triton_fused_launch as launch
    import bkbench.kernels.bk.triton_fused as tf

    for mod in (launch, bound, tf):
        if hasattr(mod, "launch"):
            mod.launch = lambda *args, **kwargs: None


def _per_call_us(fn: Any, n: int) -> float:
    for _ in range(min(n // 10, 100)):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def stage_ops() -> None:
    import torch

    import bkbench
    from bkbench import op

    a, b, c = torch.randn(2, 64), torch.ones(63), torch.ones(63)
    fwd = (a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "triton_fused", "{}", False)
    g = torch.ops.bkbench.bk_core(*fwd)
    bwd = (g, g, a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, "triton_fused", "{}", True, False)
    # the operators' Python implementations: this tree's names, or torch.library.custom_op's (older trees)
    impl = getattr(op, "_bk_core_impl", None) or op.bk_core_op._init_fn
    impl_bwd = getattr(op, "_bk_core_backward_impl", None) or op.bk_core_backward_op._init_fn
    rows = (("bkbench.bk_core (eager)", lambda: bkbench.bk_core(a, b, c, 1j, impl="triton_fused")),
            ("torch.ops.bkbench.bk_core", lambda: torch.ops.bkbench.bk_core(*fwd)),
            ("its implementation alone", lambda: impl(*fwd)),
            ("torch.ops.bkbench.bk_core_backward", lambda: torch.ops.bkbench.bk_core_backward(*bwd)),
            ("its implementation alone", lambda: impl_bwd(*bwd)))
    for name, fn in rows:
        print(f"ops: {name:40s} {_per_call_us(fn, 3000):7.1f} us per call")


def _step_us(model: Any, compiled: bool, x: Any) -> float:
    """Mean host time of one training step (gradients cleared, forward, mean-square loss, backward)."""
    import torch

    m = torch.compile(model, fullgraph=True) if compiled else model

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        m(x).pow(2).mean().backward()

    return _per_call_us(step, 300)


def stage_model() -> None:
    import torch
    from compile_model_h200 import BKModel

    for mixer in ("bk", "control"):
        for compiled in (False, True):
            torch._dynamo.reset()
            torch.manual_seed(0)
            us = _step_us(BKModel(64, 8, 4, mixer, impl="triton_fused"), compiled, torch.randn(2, 64, 8))
            print(f"model: {mixer:8s} {'compiled' if compiled else 'eager':9s} {us:8.0f} us per training step")


def stage_parts() -> None:
    import torch
    from compile_model_h200 import BKModel

    import bkbench.kernels.bk._triton_fused_bound as bound
    import bkbench.op as op
    from bkbench.workspace import fresh_workspace

    spent: dict[str, list[float]] = {"eager_call": [0.0, 0], "BoundVjp": [0.0, 0]}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name][0] += time.perf_counter() - t0
            spent[name][1] += 1
            return out
        return wrapper

    torch.manual_seed(0)
    model = BKModel(64, 8, 4, "bk", impl="triton_fused")
    x = torch.randn(2, 64, 8)
    _step_us(model, True, x)  # compiles and warms up
    eager_call, vjp_call = op.eager_call, bound.BoundVjp.__call__
    op.eager_call, bound.BoundVjp.__call__ = timed("eager_call", eager_call), timed("BoundVjp", vjp_call)
    for v in spent.values():
        v[:] = [0.0, 0]
    step = _step_us(model, True, x)
    op.eager_call, bound.BoundVjp.__call__ = eager_call, vjp_call
    print(f"parts: compiled step {step:.0f} us")
    for name, (total, calls) in spent.items():
        print(f"parts: {name} inside the compiled step {total / calls * 1e6:.1f} us per call")
    a, b, c = torch.randn(2, 64), torch.ones(63), torch.ones(63)

    def call() -> Any:
        return eager_call(a, b, c, 1j, "triton_fused", False, None, {}, differentiable=True)

    def fresh_call() -> Any:
        with torch.no_grad(), fresh_workspace():
            return call()

    print(f"parts: eager_call alone {_per_call_us(call, 3000):.1f} us; inside no_grad and fresh_workspace() "
          f"{_per_call_us(fresh_call, 3000):.1f} us")
    lib = torch.library.Library("bkbench", "IMPL")  # empty bodies: the graph and the dispatch alone
    lib.impl("bk_core", lambda a, *rest: torch.empty(*a.shape, 2), "CPU")
    lib.impl("bk_core_backward", lambda grad, g, a, *rest: (torch.empty_like(a), a.new_empty(0)), "CPU")
    for mixer in ("bk", "control"):
        torch._dynamo.reset()
        us = _step_us(BKModel(64, 8, 4, mixer, impl="triton_fused"), True, x)
        print(f"parts: {mixer} compiled, the operators' bodies empty: {us:.0f} us per training step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                    help="checkout whose bkbench and kernels are imported (default: this one)")
    ap.add_argument("--stages", default="ops,model")
    args = ap.parse_args()
    sys.path.insert(0, args.root)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _stub_launches()
    for name in args.stages.split(","):
        {"ops": stage_ops, "model": stage_model, "parts": stage_parts}[name]()


if __name__ == "__main__":
    main()
