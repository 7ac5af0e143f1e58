"""Where the time of the user's call goes on a GPU (issue 22): a cProfile of eager ``bk_core`` forwards, and
torch.profiler tables of a module calling ``bk_core`` (forward + backward) eager against
``torch.compile(fullgraph=True)``, with inductor's generated code kept.

    PYTHONPATH=$PWD python3 bench/usercall_profile.py --out $OUT/profile

Writes ``host_cprofile.txt`` and ``compile_profile.txt`` under ``--out`` (inductor's generated code stays in its
cache folder, ``/tmp/torchinductor_$USER``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bkbench  # noqa: E402


def inputs(batch: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = -2.0 + 0.5 * torch.randn(batch, n, generator=gen, device="cuda")
    b = torch.randn(batch, n - 1, generator=gen, device="cuda")
    c = torch.randn(batch, n - 1, generator=gen, device="cuda")
    return a, b, c


def host(out: Path) -> None:
    a, b, c = inputs(8, 4096)
    lines = []
    for name, fn in (("bk_core b,c tensors", lambda: bkbench.bk_core(a, b, c, 1j, impl="triton_fused")),
                     ("bk_core numbers", lambda: bkbench.bk_core(a, 1.0, 1.0, 1j, impl="triton_fused")),
                     ("bk_core auto", lambda: bkbench.bk_core(a, b, c, 1j))):
        for _ in range(100):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(1000):
            fn()
        torch.cuda.synchronize()
        lines.append(f"{name}: {(time.perf_counter() - t0) * 1e3:.1f} us per call (1000 calls, B=8 N=4096)")
    table = _cprofile(lambda: bkbench.bk_core(a, b, c, 1j, impl="triton_fused"), 2000, ("tottime",), 40)[0]
    (out / "host_cprofile.txt").write_text("\n".join(lines) + "\n\n" + table)
    print("\n".join(lines))


class Layer(torch.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.v = torch.nn.Parameter(0.1 * torch.randn(n, device="cuda"))

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        g = bkbench.bk_core(a + self.v, b, c, 1j)
        return torch.cat([g.real, g.imag], dim=-1)


def compile_profile(out: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    text = []
    for batch, n in ((4096, 4096), (8, 4096)):
        a, b, c = inputs(batch, n)
        layer = Layer(n)
        compiled = torch.compile(layer, fullgraph=True)
        w = torch.randn(batch, 2 * n, device="cuda")

        def step(m: torch.nn.Module) -> None:
            layer.v.grad = None
            (m(a, b, c) * w).sum().backward()

        for name, m in (("eager", layer), ("compiled", compiled)):
            for _ in range(3):
                step(m)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(20):
                step(m)
            torch.cuda.synchronize()
            wall = (time.perf_counter() - t0) / 20 * 1e3
            if batch * n >= 2**20:
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
                    for _ in range(5):
                        step(m)
                    torch.cuda.synchronize()
                table = p.key_averages().table(sort_by="cuda_time_total", row_limit=20)
            else:  # host-bound: where the host's time goes
                table = _cprofile(lambda: step(m), 50, ("tottime",), 25)[0]
            text.append(f"== {name} {batch}x{n}: {wall:.3f} ms wall per step (20 steps)\n")
            text.append(table)
            print(text[-2])
    (out / "compile_profile.txt").write_text("\n".join(text))


def _cprofile(fn: Any, calls: int, sorts: tuple[str, ...], limit: int) -> list[str]:
    """cProfile of ``calls`` calls of ``fn`` (one synchronise at the end): one table per sort key."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    prof.disable()
    tables = []
    for key in sorts:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(limit)
        tables.append(buf.getvalue())
    return tables


def _host_us(fn: Any, calls: int = 300) -> float:
    """Wall time per call of ``fn`` over ``calls`` back-to-back calls (one synchronise at the end), in us."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls * 1e6


def parts(out: Path) -> None:
    """Host cost of each piece of a training step at a host-bound shape (B=8, N=4096): the eager call with and
    without grad, the operator called directly (dispatch + implementation), its backward operator, the step eager
    and compiled; then torch.profiler's CPU table of both steps (self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    from bkbench.op import bk_core_backward_op, bk_core_op

    a, b, c = inputs(8, 4096)
    ag = a.clone().requires_grad_(True)
    g = torch.view_as_real(bkbench.bk_core(a, b, c, 1j, impl="triton_fused"))  # the operators' real views
    grad = torch.randn_like(g)
    rows = {
        "eager fwd no grad": lambda: bkbench.bk_core(a, b, c, 1j, impl="triton_fused"),
        "eager fwd, a requires grad": lambda: bkbench.bk_core(ag, b, c, 1j, impl="triton_fused"),
        "eager fwd+bwd (autograd.grad)": lambda: torch.autograd.grad(
            bkbench.bk_core(ag, b, c, 1j, impl="triton_fused").real.sum(), ag),
        "op bk_core (torch.ops, no grad)": lambda: bk_core_op(a, b, c, None, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
                                                               "triton_fused", "{}", False),
        "op bk_core_backward (torch.ops)": lambda: bk_core_backward_op(grad, g, a, b, c, None, 0.0, 0.0, 0.0,
                                                                        0.0, 0.0, 1.0, "triton_fused", "{}",
                                                                        True, False),
        "torch.add (one aten launch)": lambda: torch.add(a, 1.0),
    }
    layer = Layer(4096)
    compiled = torch.compile(layer, fullgraph=True)
    w = torch.randn(8, 2 * 4096, device="cuda")

    def step(m: torch.nn.Module) -> None:
        layer.v.grad = None
        (m(a, b, c) * w).sum().backward()

    graphed = torch.compile(layer, fullgraph=True, mode="reduce-overhead")
    rows["layer step eager"] = lambda: step(layer)
    rows["layer step compiled"] = lambda: step(compiled)
    rows["layer step compiled (reduce-overhead)"] = lambda: step(graphed)
    rows["layer forward eager, no grad"] = lambda: _no_grad(layer, a, b, c)
    rows["layer forward compiled, no grad"] = lambda: _no_grad(compiled, a, b, c)
    lines = [f"{name}: {_host_us(fn):.1f} us" for name, fn in rows.items()]
    print("\n".join(lines))
    for name, m in (("eager", layer), ("compiled", compiled)):
        own, cumulative = _cprofile(lambda: step(m), 100, ("tottime", "cumulative"), 35)
        lines.append(f"\n== cProfile, {name} step, 100 steps, B=8 N=4096, by own time\n" + own)
        lines.append(f"\n== cProfile, {name} step, 100 steps, B=8 N=4096, by cumulative time\n" + cumulative)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(20):
                step(m)
            torch.cuda.synchronize()
        lines.append(f"\n== torch.profiler, {name} step, 20 steps, B=8 N=4096")
        lines.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    (out / "parts.txt").write_text("\n".join(lines) + "\n")


def _no_grad(m: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
    with torch.no_grad():
        m(a, b, c)


def gpu_step(out: Path) -> None:
    """GPU time against wall time of a training step, eager and compiled, at B=8 and B=4096 (N=4096): CUDA-event
    time of the step, wall time per step (20 back-to-back steps), the device kernels' times (torch.profiler, CUDA),
    and any synchronising CUDA call inside the step (``torch.cuda.set_sync_debug_mode``)."""
    import warnings

    from torch.profiler import ProfilerActivity, profile

    lines = []
    for batch in (8, 4096):
        a, b, c = inputs(batch, 4096)
        layer = Layer(4096)
        compiled = torch.compile(layer, fullgraph=True)
        w = torch.randn(batch, 2 * 4096, device="cuda")

        def step(m: torch.nn.Module) -> None:
            layer.v.grad = None
            (m(a, b, c) * w).sum().backward()

        for name, m in (("eager", layer), ("compiled", compiled)):
            wall = _host_us(lambda: step(m), calls=50)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(20):
                step(m)
            end.record()
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                step(m)
            torch.cuda.set_sync_debug_mode(0)
            syncs = sorted({str(x.message)[:160] for x in caught if "synchroniz" in str(x.message).lower()})
            with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
                for _ in range(10):
                    step(m)
                torch.cuda.synchronize()
            events = start.elapsed_time(end) / 20 * 1e3
            lines.append(f"== {name} B={batch} N=4096: wall {wall:.1f} us/step, events {events:.1f} us/step; "
                         f"syncing calls in one step: {len(syncs)} {syncs}")
            lines.append(prof.key_averages().table(sort_by="self_device_time_total", row_limit=14))
            print(lines[-2])
    (out / "gpu_step.txt").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="profile")
    ap.add_argument("--stages", default="host,compile")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if "gpu_step" in args.stages:
        gpu_step(out)
    if "parts" in args.stages:
        parts(out)
    if "host" in args.stages:
        host(out)
    if "compile" in args.stages:
        compile_profile(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
