"""torch.compile(fullgraph=True) against eager for a small ResNet-BK-style model (issue 22), one training step.

    PYTHONPATH=$PWD python3 bench/compile_model_h200.py --out $OUT/compile_model.json

The model: ``layers`` residual blocks over x (B, N, d); each block is LayerNorm, a linear map to the diagonal
potential a (B, N), G = bk_core(a, b, c, 1j) with per-position couplings b, c (N-1,) held as buffers (broadcast
to the chains, read in place), the interleaved features view_as_real(G) (B, N, 2) mapped back to d by a linear
layer, and the residual sum. The loss is the mean square of the output. One step: gradients set to None, forward,
backward. ``--mixers control`` times the same model with bk_core replaced by an elementwise real map a -> (sigmoid
a, tanh a) (B, N, 2) that inductor fuses: what torch.compile does to the rest of the model, without the BK-core.
Rows: per mixer, (B, N, d, layers) and mode (``default``; ``reduce-overhead``: inductor's CUDA-graph trees),
eager and compiled medians of triton's do_bench (L2 flushed per step), the compiled/eager ratio, the compile time
of the first step, and the largest relative difference of the output and of every parameter's gradient.

``--fresh-workspace`` makes the operators allocate their workspace in every call, as they did before they kept it
on the default stream (``bkbench.workspace.operator_workspace``): an A/B of that change inside one device call.
``--profile DIR`` writes, per row, a torch.profiler table (the 40 largest self-CPU entries, CPU and CUDA activities)
of 20 eager steps and of 20 compiled steps: where a host-bound compiled step spends its time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bkbench  # noqa: E402


class BKBlock(torch.nn.Module):
    def __init__(self, n: int, d: int, mixer: str = "bk", impl: str = "auto") -> None:
        super().__init__()
        self.mixer, self.impl = mixer, impl
        self.norm = torch.nn.LayerNorm(d)
        self.to_a = torch.nn.Linear(d, 1)
        self.out = torch.nn.Linear(2, d)
        gen = torch.Generator().manual_seed(n + d)
        self.register_buffer("b", 1.0 + 0.1 * torch.randn(n - 1, generator=gen))
        self.register_buffer("c", 1.0 + 0.1 * torch.randn(n - 1, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.to_a(self.norm(x)).squeeze(-1) - 2.0  # (B, N) float32
        if self.mixer == "control":  # no BK-core: an elementwise map inductor fuses
            return x + self.out(torch.stack([a.sigmoid(), a.tanh()], dim=-1))
        g = bkbench.bk_core(a, self.b, self.c, 1j, impl=self.impl)  # b, c (N-1,) broadcast to the B chains
        return x + self.out(torch.view_as_real(g))


class BKModel(torch.nn.Module):
    def __init__(self, n: int, d: int, layers: int, mixer: str = "bk", impl: str = "auto") -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(BKBlock(n, d, mixer, impl) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def bench_ms(fn: Any) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))


def profile_table(fn: Any, steps: int = 20) -> str:
    """torch.profiler's table of ``steps`` calls of ``fn`` (after 3 unprofiled ones), 40 rows by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=70)


def row(batch: int, n: int, d: int, layers: int, mode: str, mixer: str, profile_dir: str | None = None
        ) -> dict[str, Any]:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = BKModel(n, d, layers, mixer).cuda()
    x = torch.randn(batch, n, d, device="cuda")
    compiled = torch.compile(model, fullgraph=True, mode=None if mode == "default" else mode)

    def step(m: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        for p in model.parameters():
            p.grad = None
        out = m(x)
        out.pow(2).mean().backward()
        return out, [p.grad for p in model.parameters()]

    t0 = time.perf_counter()
    step(compiled)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    for _ in range(3):  # reduce-overhead records its graphs after warm-up steps
        step(compiled)
    oc, gc = step(compiled)
    oc, gc = oc.detach().clone(), [g.clone() for g in gc]
    oe, ge = step(model)

    def rel(u: torch.Tensor, v: torch.Tensor) -> float:
        return float((u - v).abs().max() / v.abs().max().clamp_min(1e-30))

    t_e = bench_ms(lambda: step(model))
    t_c = bench_ms(lambda: step(compiled))
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        for name, m in (("eager", model), ("compiled", compiled)):
            text = profile_table(lambda m=m: step(m))
            Path(profile_dir, f"profile_{mixer}_{batch}x{n}x{d}_{mode}_{name}.txt").write_text(text)
    return {"mixer": mixer, "batch": batch, "n": n, "d": d, "layers": layers, "mode": mode, "eager_ms": t_e,
            "compiled_ms": t_c,
            "compiled_over_eager": t_c / t_e, "compile_s": compile_s, "max_rel_diff_out": rel(oc, oe),
            "max_rel_diff_grad": max(rel(u, v) for u, v in zip(gc, ge))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="compile_model.json")
    ap.add_argument("--shapes", default="8x4096,64x4096", help="BxN or BxNxd, ...")
    ap.add_argument("--d", type=int, default=64, help="d of a shape given as BxN")
    ap.add_argument("--mixers", default="bk", help="bk,control")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--modes", default="default,reduce-overhead")
    ap.add_argument("--fresh-workspace", action="store_true",
                    help="the operators allocate their workspace in every call (the behaviour before it was kept)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="write torch.profiler tables per row here")
    args = ap.parse_args()
    if args.fresh_workspace:
        import bkbench.op
        from bkbench.workspace import fresh_workspace

        bkbench.op.operator_workspace = lambda device: fresh_workspace()
    rows: list[dict[str, Any]] = []
    from bkbench.harness.env import environment

    env = {**environment(), "workspace": "fresh per call" if args.fresh_workspace else "kept on the default stream"}
    for shape in args.shapes.split(","):
        dims = [int(v) for v in shape.split("x")]
        batch, n, d = dims[0], dims[1], dims[2] if len(dims) > 2 else args.d
        for mixer in args.mixers.split(","):
            for mode in args.modes.split(","):
                try:
                    rows.append(row(batch, n, d, args.layers, mode, mixer, args.profile))
                except Exception as exc:  # keep the other rows
                    rows.append({"mixer": mixer, "batch": batch, "n": n, "d": d, "mode": mode,
                                 "error": f"{type(exc).__name__}: {exc}"[:400]})
                print("compile_model:", rows[-1], flush=True)
                Path(args.out).write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
