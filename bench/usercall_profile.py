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
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(2000):
        bkbench.bk_core(a, b, c, 1j, impl="triton_fused")
    torch.cuda.synchronize()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(40)
    (out / "host_cprofile.txt").write_text("\n".join(lines) + "\n\n" + s.getvalue())
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
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(50):
                    step(m)
                torch.cuda.synchronize()
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
                table = buf.getvalue()
            text.append(f"== {name} {batch}x{n}: {wall:.3f} ms wall per step (20 steps)\n")
            text.append(table)
            print(text[-2])
    (out / "compile_profile.txt").write_text("\n".join(text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="profile")
    ap.add_argument("--stages", default="host,compile")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if "host" in args.stages:
        host(out)
    if "compile" in args.stages:
        compile_profile(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
