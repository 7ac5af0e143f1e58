"""Device script for ``triton_fused`` and the public ``bk_core`` op on the H200 (issues 22 and 23): correctness on
the GPU, the user's call against the bare kernel, eager host cost, CUDA graphs, torch.compile, kernel variants.

    PYTHONPATH=$PWD python3 bench/triton_fused_h200.py --stages check,speed,host,graph,compile --out $OUT/run.json

Stages (``STAGES``; each writes its rows under its name in the JSON, with the environment header):

- ``check``: G against float64 at awkward and large shapes, every coupling/shift form, near-real z (the fold);
  forward + backward against the float64 F/R recurrences; a default call under ``torch.cuda.set_sync_debug_mode
  ("error")`` (no host synchronisation).
- ``speed``: do_bench medians (L2 flushed) of the bare kernel (prepared k, 16 B per element; 12 B with a scalar)
  and of ``bk_core(a, b, c, 1j)`` (separate b, c: 20 B; numbers: 12 B) at the issue's shapes, as % of the measured
  copy bandwidth, and the ratio of the two fractions.
- ``host``: 1000 back-to-back eager forwards at B = 8, N = 4096, one synchronise at the end.
- ``graph``: a CUDA graph of the forward and of forward + backward, replayed, against eager.
- ``compile``: ``torch.compile(fullgraph=True)`` of a module calling ``bk_core``, forward + backward, against eager
  (values and time).
- ``fold``: the fast kernel with and without the folded exact path (what the fold costs when nothing is flagged).
- ``bwd``: forward + backward GPU time against the forward (CUDA-graph replay).
- ``warm`` / ``sweep``: compile in parallel, then time, forward configs (``SWEEP_CONFIGS``, or ``--sweep-configs``
  as a JSON list of FusedConfig fields) at ``SWEEP_SHAPES`` (or ``--sweep-shapes``), over the built-in defaults
  (``--sweep-base default``) or over the packaged table's config of each shape (``--sweep-base table``).
- ``bwdk``: forward and exact backward GPU time of the kernels alone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bkbench  # noqa: E402
from bkbench.harness.env import environment  # noqa: E402
from bkbench.harness.problems import Inputs  # noqa: E402
from bkbench.harness.reference import reference  # noqa: E402

SPEED_SHAPES = [(4096, 1024), (4096, 4096), (16384, 1024), (1024, 16384), (256, 65536), (16384, 4096),
                (65536, 4096), (16384, 16384), (8, 65536)]
SPEED_SHAPES_SELECTED: list[tuple[int, int]] = []  # --shapes
FLUSH: list[Callable[[dict[str, Any]], None]] = [lambda res: None]  # main: write the JSON so far


def bench_ms(fn: Callable[[], Any], rep: int = 200) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median"))


def copy_gbs() -> float:
    x = torch.empty(2**29, dtype=torch.float32, device="cuda")  # 2 GiB
    y = torch.empty_like(x)
    ms = bench_ms(lambda: y.copy_(x), rep=300)
    return 2 * x.numel() * 4 / (ms * 1e-3) / 1e9


def inputs(batch: int, n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    a = (-2.0 + 0.5 * torch.randn(batch, n, generator=gen, device="cuda")).to(dtype)
    b = (1.0 + 0.2 * torch.rand(batch, max(n - 1, 0), generator=gen, device="cuda")).to(dtype)
    c = (1.0 - 0.2 * torch.rand(batch, max(n - 1, 0), generator=gen, device="cuda")).to(dtype)
    return a, b, c


def rel_err(g: torch.Tensor, ref: torch.Tensor) -> float:
    g = g.detach().to(torch.complex128).cpu()
    if not torch.isfinite(g).all():
        return math.inf
    return float((g - ref).abs().max() / ref.abs().max())


def stage_check(res: dict[str, Any]) -> None:
    rows = []
    cases = [(3, 1), (5, 2), (7, 3), (33, 17), (9, 513), (4, 1100), (2, 4097), (4, 65536), (2048, 4096)]
    for batch, n in cases:
        a, b, c = inputs(batch, n, seed=n)
        zt = torch.full((batch,), 0.3 + 1j, dtype=torch.complex64, device="cuda")
        forms = {"b,c tensors": (b, c, 1j), "b tensor, c number": (b, 0.9, 1j), "numbers": (1.1, 0.9, 1j),
                 "b is c": (b, b, 1j), "z per chain": (b, c, zt), "near-real z (fold)": (b, c, 0.2 + 0.01j)}
        if batch * n > 2**22:
            forms = {k: forms[k] for k in ("b,c tensors", "numbers", "near-real z (fold)")}
        for name, (bb, cc, z) in forms.items():
            sub = slice(0, min(batch, 8))
            g = bkbench.bk_core(a, bb, cc, z, impl="triton_fused")
            ref = reference(Inputs(a[sub].cpu(), bb[sub].cpu() if isinstance(bb, torch.Tensor) else bb,
                                   cc[sub].cpu() if isinstance(cc, torch.Tensor) else cc,
                                   z[sub].cpu() if isinstance(z, torch.Tensor) else z))
            e = rel_err(g[sub], ref)
            rows.append({"batch": batch, "n": n, "form": name, "rel_err": e, "ok": e < 2e-4})
    # zero pivot: a = [0, 1], b = c = 1, z = 0 is not singular (G = [-1, 0])
    g = bkbench.bk_core(torch.tensor([[0.0, 1.0]], device="cuda"), 1.0, 1.0, 0.0, impl="triton_fused")
    rows.append({"batch": 1, "n": 2, "form": "zero pivot", "G": [str(complex(x)) for x in g[0].cpu()],
                 "ok": bool(torch.allclose(g.cpu(), torch.tensor([[-1.0 + 0j, 0j]]), atol=1e-6))})
    # backward against the F/R recurrences in float64 (thomas float64 autograd)
    for batch, n in ((4, 1000), (2, 5000), (64, 4096)):
        a, b, c = inputs(batch, n, seed=7)
        a1 = a.clone().requires_grad_(True)
        go = torch.randn(batch, n, dtype=torch.complex64, device="cuda")
        (bkbench.bk_core(a1, b, c, 1j, impl="triton_fused") * go.conj()).real.sum().backward()
        a2 = a.double().clone().requires_grad_(True)
        (bkbench.bk_core(a2, b.double(), c.double(), 1j, impl="thomas") * go.conj().to(torch.complex128)
         ).real.sum().backward()
        e = float((a1.grad.double() - a2.grad).abs().max() / a2.grad.abs().max())
        rows.append({"batch": batch, "n": n, "form": "grad_a vs thomas float64", "rel_err": e, "ok": e < 1e-3})
    # no host synchronisation in the default call
    a, b, c = inputs(64, 4096)
    bkbench.bk_core(a, b, c, 1j)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for impl in ("triton_fused", "auto"):
            bkbench.bk_core(a, b, c, 1j, impl=impl)
            bkbench.bk_core(a, 1.0, 1.0, 0.5j, impl=impl)
        sync_ok, sync_detail = True, "no synchronisation"
    except RuntimeError as exc:
        sync_ok, sync_detail = False, str(exc)[:300]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    rows.append({"form": "default call, sync debug mode error", "ok": sync_ok, "detail": sync_detail})
    res["check"] = rows
    bad = [r for r in rows if not r["ok"]]
    print(f"check: {len(rows) - len(bad)}/{len(rows)} ok" + "".join(f"\n  FAIL {r}" for r in bad))


def stage_speed(res: dict[str, Any], bw: float) -> None:
    from bkbench.kernels.bk import triton_fused as tf

    rows = res["speed"] = []
    for batch, n in SPEED_SHAPES_SELECTED or SPEED_SHAPES:
        rows += _speed_rows(tf, batch, n, bw)
        torch.cuda.empty_cache()
        FLUSH[0](res)  # a stage cut by a time limit keeps its finished shapes


def _speed_rows(tf: Any, batch: int, n: int, bw: float) -> list[dict[str, Any]]:
    a, b, c = inputs(batch, n)
    k = (b * c).contiguous()
    z = torch.full((batch,), 1j, dtype=torch.complex64, device="cuda")
    ks = torch.ones((), device="cuda").expand(batch, n - 1)
    e = batch * n
    rows = []
    for coupling, bare, user, bare_bytes, user_bytes in (
        ("k", partial(tf.forward, a, k, z), partial(bkbench.bk_core, a, b, c, 1j, impl="triton_fused"), 16, 20),
        ("scalar", partial(tf.forward, a, ks, z), partial(bkbench.bk_core, a, 1.0, 1.0, 1j, impl="triton_fused"),
         12, 12),
    ):
        bare(), user()
        t_bare = bench_ms(bare)
        t_user = bench_ms(user)
        fb = bare_bytes * e / (t_bare * 1e-3) / 1e9 / bw
        fu = user_bytes * e / (t_user * 1e-3) / 1e9 / bw
        r = {"batch": batch, "n": n, "coupling": coupling, "bare_us": t_bare * 1e3, "user_us": t_user * 1e3,
             "bare_pct_copy": 100 * fb, "user_pct_copy": 100 * fu, "user_over_bare": fu / fb}
        rows.append(r)
        print(f"speed {batch}x{n} {coupling}: bare {r['bare_us']:.1f} us ({r['bare_pct_copy']:.1f} %), "
              f"user {r['user_us']:.1f} us ({r['user_pct_copy']:.1f} %), ratio {r['user_over_bare']:.3f}")
    return rows


def stage_host(res: dict[str, Any]) -> None:
    """Eager host cost at B = 8, N = 4096 (issue 22's measure): 1000 back-to-back calls and one synchronise at the
    end, repeated 5 times, the repeats interleaved across rows (median, min and max per call); the host's submit
    time alone (before the synchronise) and the GPU time of one call (do_bench: its L2 flush keeps the queue busy,
    so this is the kernels' time while the call's host time is below the flush's)."""
    rows = []
    a, b, c = inputs(8, 4096)
    ag = a.clone().requires_grad_(True)
    w = torch.randn(8, 4096, dtype=torch.complex64, device="cuda")
    from bkbench.kernels.bk import triton_fused as tf
    from bkbench.validate import call_args

    a3, b3, c3 = a.view(2, 4, 4096), b.view(2, 4, 4095), c.view(2, 4, 4095)
    b1, c1 = b[0].clone(), c[0].clone()
    ops = tf.operands_of(call_args(a, b, c, 1j))[0]
    cfg = tf._configs(ops, None, None)[0]
    calls = (("forward_operands (launch only)", lambda: tf.forward_operands(ops, cfg)),
             ("bk_core b,c tensors", lambda: bkbench.bk_core(a, b, c, 1j, impl="triton_fused")),
             ("bk_core numbers", lambda: bkbench.bk_core(a, 1.0, 1.0, 1j, impl="triton_fused")),
             ("bk_core auto", lambda: bkbench.bk_core(a, b, c, 1j)),
             ("bk_core b,c tensors, a requires grad", lambda: bkbench.bk_core(ag, b, c, 1j, impl="triton_fused")),
             ("bk_core fwd+bwd (autograd.grad)", lambda: torch.autograd.grad(
                 (bkbench.bk_core(ag, b, c, 1j, impl="triton_fused") * w).real.sum(), ag)),
             ("bk_core a (2, 4, N), b,c tensors (2, 4, N-1)", lambda: bkbench.bk_core(
                 a3, b3, c3, 1j, impl="triton_fused")),
             ("bk_core b,c (N-1,) broadcast", lambda: bkbench.bk_core(a, b1, c1, 1j, impl="triton_fused")))
    walls: dict[str, list[float]] = {name: [] for name, _ in calls}
    submits: dict[str, list[float]] = {name: [] for name, _ in calls}
    for name, fn in calls:
        for _ in range(50):
            fn()
    torch.cuda.synchronize()
    for _ in range(5):  # the repeats interleaved across rows, so a drift of the host's speed reaches every row
        for name, fn in calls:
            t0 = time.perf_counter()
            for _ in range(1000):
                fn()
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            walls[name].append((time.perf_counter() - t0) / 1000 * 1e6)
            submits[name].append((t1 - t0) / 1000 * 1e6)
    for name, fn in calls:
        gpu = bench_ms(fn) * 1e3
        wall, sub = sorted(walls[name]), sorted(submits[name])
        rows.append({"call": name, "us_per_call": wall[2], "us_min": wall[0], "us_max": wall[-1],
                     "us_repeats": walls[name], "host_submit_us": sub[2], "gpu_us": gpu})
        print(f"host {name}: {wall[2]:.1f} us per call (median of 5 x 1000 calls, B=8 N=4096; min {wall[0]:.1f}, "
              f"max {wall[-1]:.1f}; host submit {sub[2]:.1f} us; GPU {gpu:.1f} us per call, valid below the L2 "
              "flush's ~80 us)")
    res["host"] = rows
    from bkbench import bound_calls  # which launch each kept signature takes (bound_calls._BOUND: diagnostics)
    res["host_bound"] = [{"key": repr(k)[:300], "type": type(v).__name__,
                          "compiled_launcher": getattr(getattr(v, "forward", v), "_entry", None) is not None,
                          "direct_launch": getattr(getattr(v, "forward", v), "_direct", None) is not None}
                         for k, v in bound_calls._BOUND.items()]
    for r in res["host_bound"]:
        print(f"host bound: {r['type']} compiled_launcher={r['compiled_launcher']} direct={r['direct_launch']} "
              f"{r['key'][:160]}")


def stage_graph(res: dict[str, Any]) -> None:
    rows = []
    a, b, c = inputs(256, 4096)
    static = a.clone()
    eager = bkbench.bk_core(static, b, c, 1j)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            bkbench.bk_core(static, b, c, 1j)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = bkbench.bk_core(static, b, c, 1j)
    new = inputs(256, 4096, seed=3)[0]
    static.copy_(new)
    graph.replay()
    rows.append({"graph": "forward", "identical_to_eager": bool(torch.equal(out, bkbench.bk_core(new, b, c, 1j))),
                 "first_identical": bool(torch.equal(eager, bkbench.bk_core(a, b, c, 1j)))})
    # forward + backward
    w = torch.randn(256, 4096, dtype=torch.complex64, device="cuda")
    x = a.clone().requires_grad_(True)

    def step():
        x.grad = None
        (bkbench.bk_core(x, b, c, 1j) * w).real.sum().backward()

    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g2 = torch.cuda.CUDAGraph()
    x.grad = None
    with torch.cuda.graph(g2):
        (bkbench.bk_core(x, b, c, 1j) * w).real.sum().backward()
    with torch.no_grad():
        x.copy_(new)
    g2.replay()
    captured = x.grad.clone()
    x.grad = None
    (bkbench.bk_core(x, b, c, 1j) * w).real.sum().backward()
    rows.append({"graph": "forward + backward", "identical_to_eager": bool(torch.equal(captured, x.grad))})
    res["graph"] = rows
    print("graph:", rows)


class _Layer(torch.nn.Module):
    """A layer calling ``bk_core`` whose output features are G's real and imaginary parts: ``cat([G.real,
    G.imag])`` (``features="cat"``) or the interleaved view ``view_as_real(G)`` (``features="view"``; inductor has no
    complex code generation, so the first form's backward runs complex eager fallbacks when compiled)."""

    def __init__(self, n: int, features: str = "cat") -> None:
        super().__init__()
        self.v = torch.nn.Parameter(0.1 * torch.randn(n, device="cuda"))
        self.features = features

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        g = bkbench.bk_core(a + self.v, b, c, 1j)
        if self.features == "view":
            return torch.view_as_real(g).flatten(-2)
        return torch.cat([g.real, g.imag], dim=-1)


COMPILE_MODES = ("default",)  # --compile-modes


def stage_compile(res: dict[str, Any]) -> None:
    """``torch.compile(fullgraph=True)`` of ``_Layer`` (forward + backward) against eager, per feature form, shape and
    compile mode (``default``; ``reduce-overhead``: inductor's CUDA graphs, which replay the step without its host
    work). do_bench medians of one training step; compile time of the first step."""
    rows = []
    for mode in COMPILE_MODES:
        for features in ("cat", "view"):
            for batch, n in ((4096, 4096), (8, 4096)):
                try:
                    rows.append(_compile_row(mode, features, batch, n))
                except Exception as exc:  # keep the other rows
                    rows.append({"mode": mode, "features": features, "batch": batch, "n": n,
                                 "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                print("compile:", rows[-1])
    res["compile"] = rows


def _compile_row(mode: str, features: str, batch: int, n: int) -> dict[str, Any]:
    torch._dynamo.reset()
    a, b, c = inputs(batch, n)
    layer = _Layer(n, features)
    if mode.endswith("-static"):  # inputs at fixed addresses: CUDA-graph trees read them in place, no copy per step
        for t in (a, b, c):
            torch._dynamo.mark_static_address(t)
    base = mode.removesuffix("-static")
    compiled = torch.compile(layer, fullgraph=True, mode=None if base == "default" else base)
    w = torch.randn(batch, 2 * n, device="cuda")

    def run(m):
        layer.v.grad = None
        out = m(a, b, c)
        (out * w).sum().backward()
        return out.clone(), layer.v.grad.clone()

    t0 = time.perf_counter()
    oc, gc = run(compiled)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    for _ in range(3):  # reduce-overhead records its CUDA graph after warm-up steps
        oc, gc = run(compiled)
    oe, ge = run(layer)
    t_e = bench_ms(lambda: run(layer))
    t_c = bench_ms(lambda: run(compiled))
    return {"mode": mode, "features": features, "batch": batch, "n": n,
            "max_abs_diff_out": float((oc - oe).abs().max()),
            "max_rel_diff_grad": float((gc - ge).abs().max() / ge.abs().max()), "eager_ms": t_e,
            "compiled_ms": t_c, "compiled_over_eager": t_c / t_e, "compile_s": compile_s}


def stage_fold(res: dict[str, Any], bw: float) -> None:
    from bkbench.kernels.bk import triton_fused as tf
    from bkbench.kernels.bk._triton_fused_launch import from_kernel_convention

    rows = []
    for batch, n in ((4096, 4096), (16384, 1024), (8, 65536)):
        a, b, c = inputs(batch, n)
        k = (b * c).contiguous()
        z = torch.full((batch,), 1j, dtype=torch.complex64, device="cuda")
        ops = from_kernel_convention(a, k, z)
        cfg = tf._configs(ops, None, None)[0]
        on = bench_ms(lambda: tf.forward_operands(ops, cfg))
        off = bench_ms(lambda: tf.forward_operands(ops, cfg, fold=False))
        rows.append({"batch": batch, "n": n, "fold_us": on * 1e3, "no_fold_us": off * 1e3})
        print("fold:", rows[-1])
    res["fold"] = rows


def stage_bwd(res: dict[str, Any]) -> None:
    rows = []
    for batch, n in ((4096, 4096), (1024, 16384)):
        a, b, c = inputs(batch, n)
        x = a.clone().requires_grad_(True)
        w = torch.randn(batch, n, dtype=torch.complex64, device="cuda")

        def fwd():
            with torch.no_grad():
                bkbench.bk_core(a, b, c, 1j, impl="triton_fused")

        def both():
            x.grad = None
            (bkbench.bk_core(x, b, c, 1j, impl="triton_fused") * w).real.sum().backward()

        tf_ms, tb_ms = bench_ms(fwd), bench_ms(both)
        rows.append({"batch": batch, "n": n, "fwd_us": tf_ms * 1e3, "fwd_bwd_us": tb_ms * 1e3, "ratio": tb_ms / tf_ms})
        print("bwd:", rows[-1])
    res["bwd"] = rows


SWEEP_SHAPES = [(4096, 4096), (16384, 1024), (1024, 16384), (256, 65536), (16384, 4096), (65536, 4096),
                (8, 65536), (4096, 1024)]
SWEEP_CONFIGS = [{}, {"maxnreg": 112}, {"maxnreg": 104}, {"maxnreg": 96}, {"M1": 12}, {"M1": 12, "maxnreg": 104}]
SWEEP_N1024 = [{"L": 32}, {"seq": 2}]  # the H100 table's N = 1024 layouts
SWEEP_BASE = ["default"]  # --sweep-base


def _sweep_cases() -> list[tuple[dict[str, int], str, int, int]]:
    out = []
    for batch, n in SWEEP_SHAPES:
        for cfg in SWEEP_CONFIGS + (SWEEP_N1024 if n == 1024 else []):
            for mode in ("tensors", "numbers"):
                out.append((cfg, mode, batch, n))
    return out


def _sweep_config(cfg: dict[str, int], mode: str, batch: int, n: int) -> Any:
    """The forward config of a sweep case: ``cfg``'s fields over the built-in defaults, or (``--sweep-base table``)
    over the config the packaged table gives the shape."""
    import dataclasses

    from bkbench.kernels.bk import triton_fused as tf
    from bkbench.kernels.bk._triton_fused_tables import lookup

    if SWEEP_BASE[0] == "table":
        found = lookup(torch.device("cuda"), torch.float32, mode == "numbers", batch, n)
        return dataclasses.replace(found.fwd, **cfg)
    return tf.FusedConfig.from_dict(cfg)


def _operands(mode: str, batch: int, n: int) -> Any:
    from bkbench.kernels.bk import triton_fused as tf
    from bkbench.validate import call_args

    a, b, c = inputs(batch, n)
    args = call_args(a, b, c, 1j) if mode == "tensors" else call_args(a, 1.0, 1.0, 1j)
    return tf.operands_of(args)[0]


def _warm_one(job: tuple[dict[str, int], str, int, int]) -> str:
    """Compile one sweep case's kernel (a batch of 16 chains specialises like the full batch)."""
    from bkbench.kernels.bk import triton_fused as tf

    cfg, mode, batch, n = job
    try:
        tf.forward_operands(_operands(mode, 16 if batch % 16 == 0 else batch, n), tf.FusedConfig.from_dict(cfg))
        torch.cuda.synchronize()
        return "ok"
    except Exception as exc:  # reported, the sweep goes on
        return f"{type(exc).__name__}: {exc}"


def stage_warm(res: dict[str, Any]) -> None:
    """Compile every sweep case in parallel processes (Triton's cache on disk is shared with this process)."""
    import multiprocessing as mp

    resolved = [(_sweep_config(c, m, b, n).to_dict(), m, b, n) for c, m, b, n in _sweep_cases()]
    jobs = {json.dumps([c, m, 16 if b % 16 == 0 else b, n], sort_keys=True): (c, m, b, n) for c, m, b, n in resolved}
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(min(14, len(jobs))) as pool:
        out = pool.map(_warm_one, list(jobs.values()))
    res["warm"] = {"jobs": len(jobs), "seconds": time.perf_counter() - t0,
                   "errors": [o for o in out if o != "ok"]}
    print("warm:", res["warm"])


def stage_sweep(res: dict[str, Any], bw: float) -> None:
    """Forward GPU time of each sweep config through the user-call operands (b, c tensors: 20 B per element;
    numbers: 12 B), with the flags raised, at the sweep shapes."""
    from bkbench.kernels.bk import triton_fused as tf

    rows = []
    cache: dict[tuple[str, int, int], Any] = {}
    for cfg, mode, batch, n in _sweep_cases():
        key = (mode, batch, n)
        if key not in cache:
            cache.clear()
            torch.cuda.empty_cache()
            cache[key] = _operands(mode, batch, n)
        ops = cache[key]
        try:
            fc = _sweep_config(cfg, mode, batch, n)
            g, flags = tf.forward_operands(ops, fc, return_flags=True)
            ms = bench_ms(lambda: tf.forward_operands(ops, fc), rep=100)
            byt = (20 if mode == "tensors" else 12) * batch * n
            rows.append({"config": cfg, "mode": mode, "batch": batch, "n": n, "us": ms * 1e3,
                         "pct_copy": 100 * byt / (ms * 1e-3) / 1e9 / bw, "flagged": int(flags.amax(1).sum())})
        except Exception as exc:
            rows.append({"config": cfg, "mode": mode, "batch": batch, "n": n, "error": f"{type(exc).__name__}: {exc}"})
        print("sweep:", rows[-1])
    res["sweep"] = rows


def stage_bwdk(res: dict[str, Any]) -> None:
    """Forward and exact backward GPU time of the kernels alone (user-call operands, tensors b and c; no autograd
    or elementwise ops around them), do_bench medians with L2 flushed: the issue's "forward + backward <= 3x"."""
    from bkbench.kernels.bk import triton_fused as tf

    rows = []
    for batch, n in ((4096, 4096), (1024, 16384), (16384, 1024)):
        ops = _operands("tensors", batch, n)
        cfg, bcfg = tf._configs(ops, None, None)
        g = tf.forward_operands(ops, cfg)
        go = torch.randn(batch, n, dtype=torch.complex64, device="cuda")
        t_f = bench_ms(lambda: tf.forward_operands(ops, cfg))
        t_b = bench_ms(lambda: tf.vjp_operands(ops, g, go, need_s=False, config=bcfg))
        t_bs = bench_ms(lambda: tf.vjp_operands(ops, g, go, need_s=True, config=bcfg))
        rows.append({"batch": batch, "n": n, "fwd_us": t_f * 1e3, "vjp_us": t_b * 1e3, "vjp_need_s_us": t_bs * 1e3,
                     "fwd_plus_bwd_over_fwd": (t_f + t_b) / t_f})
        print("bwdk:", rows[-1])
    res["bwdk"] = rows


STAGES: dict[str, Callable[..., None]] = {
    "check": stage_check, "speed": stage_speed, "host": stage_host, "graph": stage_graph,
    "compile": stage_compile, "fold": stage_fold, "bwd": stage_bwd, "warm": stage_warm, "sweep": stage_sweep,
    "bwdk": stage_bwdk,
}
NEEDS_BANDWIDTH = {"speed", "fold", "sweep"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", default="check,speed,host,graph,compile,fold,bwd")
    ap.add_argument("--out", default="triton_fused_h200.json")
    ap.add_argument("--shapes", default="", help="speed stage: BxN,BxN,... (default: SPEED_SHAPES)")
    ap.add_argument("--compile-modes", default="default",
                    help="compile stage: default,reduce-overhead,reduce-overhead-static (inputs marked static)")
    ap.add_argument("--sweep-configs", default="", help="warm/sweep: JSON list of FusedConfig field dicts")
    ap.add_argument("--sweep-shapes", default="", help="warm/sweep: BxN,BxN,...")
    ap.add_argument("--sweep-base", default="default", choices=("default", "table"),
                    help="warm/sweep: the configs override the built-in defaults or each shape's table config")
    args = ap.parse_args()
    if args.sweep_configs:
        SWEEP_CONFIGS[:] = json.loads(args.sweep_configs)
        SWEEP_N1024.clear()
    if args.sweep_shapes:
        SWEEP_SHAPES[:] = [tuple(int(x) for x in s.split("x")) for s in args.sweep_shapes.split(",")]
    SWEEP_BASE[0] = args.sweep_base
    SPEED_SHAPES_SELECTED.extend(tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s)
    global COMPILE_MODES
    COMPILE_MODES = tuple(m for m in args.compile_modes.split(",") if m)
    res: dict[str, Any] = {"environment": environment(measure_bandwidth=False), "command": " ".join(sys.argv)}
    FLUSH[0] = lambda r: Path(args.out).write_text(json.dumps(r, indent=1, default=str))
    bw = copy_gbs()
    res["copy_gbs"] = bw
    print(f"copy bandwidth {bw:.0f} GB/s")
    for name in args.stages.split(","):
        t0 = time.perf_counter()
        try:
            STAGES[name](res, bw) if name in NEEDS_BANDWIDTH else STAGES[name](res)
        except Exception as exc:  # keep the other stages' results
            import traceback

            res[name + "_error"] = traceback.format_exc()
            print(f"stage {name} failed: {type(exc).__name__}: {exc}")
        res.setdefault("seconds", {})[name] = time.perf_counter() - t0
        Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
