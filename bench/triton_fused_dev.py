# ruff: noqa: B023  (closures are timed within the loop iteration that defines them)
"""Development script of the fused Triton kernel ``triton_fused`` (issue 3): correctness, copy bandwidth, forward
and backward config sweeps, the tuner against the exhaustive sweep, the final table, host cost, Nsight Compute.

It produced the H100 development runs 1-6 (reports/triton_fused/, with the kernels of commit 969fdbc);
``bench/triton_fused_h200.py`` is the script of the later H200 work (issues 22 and 23). This one calls the kernel
through its public entry points (``triton_fused``, ``forward``, ``vjp``, ``plan``, ``FusedConfig``, ``BwdConfig``)
and the tuner (``bkbench.harness.tuning``), so it runs against this tree.

Run on a GPU machine from the repository root (``--help`` lists the stages)::

    PYTHONPATH=$PWD python3 bench/triton_fused_dev.py --out $OUT --stage gate,tuneall,final,base2,sweep2,grad
    PYTHONPATH=$PWD python3 bench/triton_fused_dev.py --out $OUT --stage sweep,tune,issue --deadline 500
    TF_STORE_SET=1 PYTHONPATH=$PWD python3 bench/triton_fused_dev.py --out $OUT --stage store
    TF_TUNE_SHAPES=sweep TF_TUNE_BWD=0 TF_SWEEP_SHAPES=256x65536 PYTHONPATH=$PWD \\
        python3 bench/triton_fused_dev.py --out $OUT --stage tuneall,sweep2

and a dry run of the script's logic on the CPU (the kernels in Triton's interpreter, tiny shapes, one-shot timers;
stages sweep and sweep2 time a slice of the tuner's space, ``_fwd_space``; the tuner, in stages tune and tuneall,
searches its own space with its own timer, ``bkbench.harness.tuning.time_ms`` on device "cpu"; stages gate and check need
CUDA)::

    TF_DEV_DEVICE=cpu TRITON_INTERPRET=1 PYTHONPATH=$PWD python3 bench/triton_fused_dev.py --out /tmp/tf \\
        --stage grad,mem,sweep,tune,issue

Stages (``STAGES``, run in the order given; each is skipped once ``--deadline`` seconds have passed):

- ``mem``: the tile pattern alone (load a and k, split into register columns, join, store) against plain loads.
- ``gate``: the project's correctness gate on CUDA for triton_fused (value + gradient cases, 2 seeds).
- ``grad``: forward and backward (S) error against the float64 references (``bkbench.harness.tuning._check``).
- ``check``: G against the float64 reference at awkward and large shapes, fast path and ``force_exact``.
- ``sweep``: exhaustive forward sweep of the tuner's space on SWEEP_SHAPES; its result feeds ``tune``.
- ``tune``: the tuner (``bkbench.harness.tuning.tune``) on SWEEP_SHAPES against ``sweep``'s times; feeds ``issue``.
- ``issue``: forward and fwd+bwd at the issue shapes with the default config and ``tune``'s winners.
- ``base``: the thomas and assoc_scan baselines against the default forward.
- ``bwd``: every backward config of the tuner's space at one shape.
- ``tuneall``: the tuner on TUNE_SHAPES x {k, scalar}, each stage's candidates compiled in parallel first.
- ``sweep2``: exhaustive forward sweep of the tuner's space on SWEEP_SHAPES against the tuner's cached choice.
- ``final``: the final table with the looked-up configs (eager, CUDA graph, fwd+bwd, host cost per call).
- ``bwdlin``: the backward's ``lin_exact`` 1 against 2 at every FINAL_SHAPES x {k, scalar}.
- ``base2``: the baselines against the forward with the looked-up config.
- ``store``: tile x output store mode sweep, forward and backward (``TF_STORE_SET`` picks the set).
- ``seq``: N = 1024 layouts: the two-tile kernel (seq 2) against halo'd chunks and one 1024-position tile.
- ``host``: host cost of one eager forward (back-to-back calls, then a cProfile).
- ``ncu``: Nsight Compute on one forward launch per NCU_CASES entry (bench/triton_fused_ncu.py).

Removed: ``parts`` (the whole forward call against the exact-fallback kernel launched alone, flags read one chain
per load against FB chains per load). The exact path is now folded into the fast kernels (no separate launch, no
flag blocks: the helpers it called, ``_k_arg``, ``launch_fwd_exact``, ``_exact_programs``, ``_flag_block``, are
gone); ``bench/triton_fused_h200.py --stages fold`` measures what the folded exact path costs.

Environment: ``TF_DEV_DEVICE`` (``cuda``; ``cpu`` = the dry run), ``TF_SWEEP_SHAPES`` (e.g. ``256x65536``),
``TF_TUNE_SHAPES=sweep`` (tune only SWEEP_SHAPES, k only), ``TF_TUNE_BWD`` (``0``: no backward tuning),
``TF_STORE_SET`` (1 or 2). ``BKBENCH_CACHE_DIR`` defaults to ``--out``/cache (the tuner's cache of this run).

Writes ``$OUT/triton_fused_dev.json`` (environment header, every measurement, per-stage seconds, errors), saved
after every stage, and prints a short summary. Timings: ``triton.testing.do_bench`` (L2 flushed before every call),
median of the samples. Configs are compiled first in parallel worker processes (they fill Triton's on-disk
cache), then timed one by one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the kernel's own tile loader and column join, for stage "mem" (a jit function finds what it calls among the
# module's globals); _triton_fused_regs gives triton and tl (stand-ins where triton is missing)
from bkbench.kernels.bk._triton_fused_passes import _load_tile  # noqa: E402
from bkbench.kernels.bk._triton_fused_regs import join_cols, tl, triton  # noqa: E402

DEV = os.environ.get("TF_DEV_DEVICE", "cuda")  # "cpu" = dry run of the script logic under the interpreter


def _inputs(batch: int, n: int, scalar: bool, dtype=torch.float32, seed: int = 0, z: complex = 1j):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    a = (-2.0 + 0.5 * torch.randn(batch, n, device=DEV, generator=gen)).to(dtype)
    if scalar:
        k = torch.ones((), device=DEV, dtype=dtype).expand(batch, max(n - 1, 0))
    else:
        k = torch.ones(batch, max(n - 1, 0), device=DEV, dtype=dtype)
    zz = torch.full((batch,), z, dtype=torch.complex64, device=DEV)
    return a, k, zz


def _pct_copy(b: int, n: int, scalar: bool, ms: float, copy_gbps: float) -> float:
    """Ideal forward bytes (a 4 B + k 4 B unless scalar + G 8 B per element) over ``ms``, in % of copy bandwidth."""
    return 100 * b * n * (12 if scalar else 16) / ms / 1e6 / copy_gbps


def _median_ms(fn, rep: int = 60) -> float:
    if DEV == "cpu":
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=10, rep=rep, return_mode="median"))


def _train_step(a, k, z, fc, bc, gout):
    """One forward + backward through autograd (``a`` requires grad; its .grad is cleared first)."""
    from bkbench.kernels.bk import triton_fused as tf

    def step():
        a.grad = None
        tf.triton_fused(a, k, z, config=fc, bwd_config=bc).backward(gout)

    return step


def copy_bandwidth() -> dict:
    """Device-to-device copy of a 256 MiB buffer: bytes read + written / median time (GB/s)."""
    if DEV == "cpu":
        return {"copy_GBps": 1.0, "complex_ab_GBps": 1.0}
    n = 64 * 1024 * 1024
    x = torch.empty(n, dtype=torch.float32, device="cuda").uniform_()
    y = torch.empty_like(x)
    ms = _median_ms(lambda: y.copy_(x), rep=200)
    a = torch.randn(1 << 24, device="cuda")
    k = torch.randn(1 << 24, device="cuda")
    ms2 = _median_ms(lambda: torch.complex(a, k), rep=200)
    return {"copy_GBps": 2 * n * 4 / ms / 1e6, "complex_ab_GBps": (1 << 24) * 16 / ms2 / 1e6}


def _compile_job(job):
    """Worker: run one job once so its kernels land in Triton's on-disk cache.

    Jobs: (config dict, batch, n, scalar) forward; ("fb", config dict, batch, n, scalar) forward+backward;
    ("gate", GateCase) one gate case; ("bwd", bwd config dict, batch, n, scalar) backward only."""
    sys.path.insert(0, str(ROOT))
    from bkbench.kernels.bk import triton_fused as tf

    try:
        if job[0] == "gate":
            from bkbench.harness.gate import run_gate

            run_gate(impls=["triton_fused"], device="cuda", cases=[job[1]])
            return None
        if job[0] in ("fb", "bwd"):
            kind, cfg, batch, n, scalar = job
            a, k, z = _inputs(batch, n, scalar)
            if kind == "fb":
                a.requires_grad_(True)
                bc = cfg.get("bwd", tf.BwdConfig().to_dict()) if isinstance(cfg, dict) else None
                fc = {kk: v for kk, v in cfg.items() if kk != "bwd"}
                g = tf.triton_fused(a, k, z, config=fc, bwd_config=bc)
                g.backward(torch.ones_like(g))
            else:
                g = tf.forward(a, k, z)
                tf.vjp(a, k, z, g, torch.ones_like(g), config=tf.BwdConfig.from_dict(cfg))
            torch.cuda.synchronize()
            return None
        cfg, batch, n, scalar = job
        a, k, z = _inputs(batch, n, scalar)
        tf.forward(a, k, z, config=tf.FusedConfig.from_dict(cfg))
        torch.cuda.synchronize()
        return None
    except Exception as exc:  # reported by the main process
        return f"{job}: {type(exc).__name__}: {exc}"[:500]


_POOL = None


def precompile(jobs, workers: int = 15) -> list[str]:
    """Run the jobs in a persistent pool of spawned workers (kernels land in Triton's on-disk cache)."""
    global _POOL
    if DEV == "cpu" or not jobs:
        return []
    import multiprocessing as mp

    if _POOL is None:
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    uniq = []
    for j in jobs:
        if j not in uniq:
            uniq.append(j)
    return [e for e in _POOL.map(_compile_job, uniq) if e]


def stage_check(out: dict) -> None:
    from bkbench.harness.accuracy import relative_error
    from bkbench.harness.problems import Problem, make_inputs
    from bkbench.harness.reference import reference
    from bkbench.kernels.bk import triton_fused as tf
    from bkbench.validate import normalize

    P = Problem
    cases = [
        P(batch=(3,), n=1), P(batch=(3,), n=2), P(batch=(5,), n=3), P(batch=(2, 3), n=17),
        P(batch=(8,), n=1000), P(batch=(6,), n=129, coupling="random"),
        P(batch=(6,), n=257, coupling="random", negative=0.3, z=0.2 + 1.5j, coupling_scale=0.2),
        P(batch=(4,), n=300, sparsity=0.3), P(batch=(3,), n=50, sparsity=1.0),
        P(batch=(4,), n=400, z=0.3 + 0.01j), P(batch=(5,), n=96, z_spread=0.5), P(batch=(4,), n=500, potential=4.0),
        P(batch=(4,), n=333, coupling="scalar"), P(batch=(4,), n=64, dtype="bfloat16"),
        P(batch=(2,), n=65536), P(batch=(2,), n=65536, coupling="scalar"), P(batch=(3,), n=40000, z=0.5 + 0.1j),
        P(batch=(2,), n=20000, z=0.3 + 0.01j), P(batch=(64,), n=4096, sparsity=0.1),
    ]
    rows = []
    for p in cases:
        for seed in (0, 1):
            q = p.with_(device="cuda", seed=seed)
            inp = make_inputs(q)
            nm = normalize(inp.a, inp.b, inp.c, inp.z)
            ref = reference(make_inputs(q.with_(device="cpu")))
            for force in (False, True):
                g, fl = tf.forward(nm.a, nm.k, nm.z, force_exact=force, return_flags=True)
                e = relative_error(g.reshape(ref.shape), ref)
                rows.append({"case": q.key, "force_exact": force, "err": e.rel_err, "flags": int(fl.sum()),
                             "chunks": fl.numel(), "pass": bool(e.finite and e.rel_err <= 2e-4)})
    out["check"] = rows
    bad = [r for r in rows if not r["pass"]]
    print(f"check: {len(rows) - len(bad)}/{len(rows)} pass; worst err "
          f"{max(r['err'] for r in rows):.2e}; flagged fast-path cases "
          f"{sum(1 for r in rows if r['flags'] and not r['force_exact'])}")
    for r in bad:
        print("  FAIL", r)


MEM_SHAPES = [(4096, 4096)]  # (B, N) of stage "mem"
MEM_TILES = [(1, 256, 16, 8), (1, 512, 8, 8)]  # (rows, segments, L, warps): R*S*L positions per program
if DEV == "cpu":
    MEM_SHAPES = [(2, 512)]


@triton.jit
def _mem_kernel(a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim, g_ptr, B, N,
                R: tl.constexpr, S: tl.constexpr, L: tl.constexpr, KM: tl.constexpr, ZM: tl.constexpr,
                SPLIT: tl.constexpr):
    """G = (alpha, k + Im alpha) of a [R, S, L] tile, stored as the forward stores G (one interleaved complex64
    tile). ``SPLIT``: the kernels' own loader (``_load_tile``: alpha = a - z and k formed in registers, split into
    L register columns) and ``join_cols``; otherwise two plain masked loads of a and k. Operands as the kernels
    take them (``Operands.args()``)."""
    ops = (a_ptr, sa, b_ptr, sb0, sb1, bval, c_ptr, sc0, sc1, cval, z_ptr, sz, zre, zim)
    pid = tl.program_id(0)
    rows = pid * R + tl.arange(0, R)
    row_ok = rows < B
    seg1 = tl.arange(0, S)
    pos = seg1[None, :, None] * L + tl.arange(0, L)[None, None, :]
    r64 = tl.where(row_ok, rows, 0).to(tl.int64)[:, None, None]
    if SPLIT:
        acols, kcols, ai, m = _load_tile(ops, rows, row_ok, pos, N, R, S, L, KM, ZM)
        gre = join_cols(acols, R, S, L)
        gim = join_cols(kcols, R, S, L) + ai[:, :, None]
    else:
        m = row_ok[:, None, None] & (pos < N)
        gre = tl.load(a_ptr + r64 * sa + pos, mask=m, other=0.0)
        gim = tl.load(b_ptr + r64 * sb0 + pos * sb1, mask=m & (pos < N - 1), other=0.0)
    outv = tl.reshape(tl.join(gre, gim), [R, S, 2 * L])
    p2 = seg1[None, :, None] * (2 * L) + tl.arange(0, 2 * L)[None, None, :]
    tl.store(g_ptr + r64 * (2 * N) + p2, outv, mask=row_ok[:, None, None] & (p2 < 2 * N))


def stage_memtest(out: dict) -> None:
    """Ceiling of the tile pattern alone (``_mem_kernel``): load a, k tile, split into columns, G_i = (a_i, k_i),
    join, store, against plain loads; per-position k, GB/s as % of the copy bandwidth."""
    from bkbench.kernels.bk._triton_fused_launch import from_kernel_convention

    bw = out["bandwidth"]["copy_GBps"]
    rows = []
    for (b, n) in MEM_SHAPES:
        a, k, z = _inputs(b, n, False)
        ops = from_kernel_convention(a, k, z)
        g = torch.empty(b, n, dtype=torch.complex64, device=DEV)
        gv = torch.view_as_real(g)
        for (R, S, L, w) in MEM_TILES:
            S2 = n // L
            R2 = max(1, (R * S) // S2)
            for split in (False, True):
                def f():
                    return _mem_kernel[(math.ceil(b / R2),)](*ops.args(), gv, b, n, R=R2, S=S2, L=L, KM=ops.km,
                                                             ZM=ops.zm, SPLIT=split, num_warps=w)
                try:
                    f()
                    ms = _median_ms(f)
                    gbps = b * n * 16 / ms / 1e6
                    rows.append({"B": b, "N": n, "R": R2, "S": S2, "L": L, "warps": w, "split": split, "ms": ms,
                                 "GBps": gbps, "pct_copy": 100 * gbps / bw})
                    print(f"memtest B{b} N{n} R{R2} S{S2} L{L} w{w} split={split}: {gbps:.0f} GB/s "
                          f"{100 * gbps / bw:.1f}%")
                except Exception as exc:
                    rows.append({"B": b, "N": n, "R": R2, "S": S2, "L": L, "split": split, "error": str(exc)[:300]})
                    print("memtest error", str(exc)[:300])
    out["memtest"] = rows


def _save(out: dict, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "triton_fused_dev.json", "w") as f:
        json.dump(out, f, indent=1, default=str)


def stage_gate(out: dict) -> None:
    """The project's correctness gate on CUDA for triton_fused (value + gradient cases, 2 seeds)."""
    from bkbench.harness.gate import battery, run_gate

    cases = battery("cuda", quick=False, seeds=(0, 1))
    t0 = time.time()
    errs = precompile([("gate", c) for c in cases if c.problem.seed == 0], workers=15)
    print(f"gate precompile in {time.time() - t0:.0f}s, {len(errs)} errors")
    rep = run_gate(impls=["triton_fused"], device="cuda", cases=cases)
    rows = [{"case": r.case, "key": r.key, "check": r.check, "status": r.status, "error": r.error,
             "detail": r.detail} for r in rep.results]
    out["gate"] = rows
    n_pass = sum(r["status"] == "pass" for r in rows)
    n_fail = sum(r["status"] == "fail" for r in rows)
    print(f"gate cuda: {n_pass} pass, {n_fail} fail, {len(rows) - n_pass - n_fail} skip")
    for r in rows:
        if r["status"] == "fail":
            print("  FAIL", r["case"], r["check"], r["detail"][:200])


def stage_gradcheck(out: dict) -> None:
    from bkbench.harness import tuning
    from bkbench.kernels.bk import triton_fused as tf

    rows = []
    shapes = [(4, 65536, False), (4, 65536, True), (4, 1000, False)]
    for (b, n, u) in (shapes if DEV == "cuda" else [(2, 40, False)]):
        prob = tuning.TuneProblem(b, n, torch.float32, u, device=DEV)
        e_f = tuning._check(tf.FusedConfig(), prob)
        e_b = tuning._check(tf.BwdConfig(), prob, bwd=True)
        rows.append({"B": b, "N": n, "scalar": u, "fwd_err": e_f, "bwd_err": e_b})
        print(f"gradcheck B{b} N{n} scalar={u}: fwd err {e_f:.2e}, S err {e_b:.2e}")
    out["gradcheck"] = rows


SWEEP_SHAPES = [(16384, 1024), (4096, 4096), (256, 65536)]
if os.environ.get("TF_SWEEP_SHAPES"):  # e.g. "256x65536": a subset, so one shape fits in a call
    SWEEP_SHAPES = [tuple(int(v) for v in s.split("x")) for s in os.environ["TF_SWEEP_SHAPES"].split(",")]
ISSUE_SHAPES = [(16384, 1024), (4096, 4096), (1024, 16384), (256, 65536), (8, 65536), (1024, 4096), (16384, 4096)]
if DEV == "cpu":
    SWEEP_SHAPES = [(2, 64), (1, 300)]
    ISSUE_SHAPES = [(2, 64), (1, 300)]


def _fwd_space() -> list[dict[str, int]]:
    """The forward configs that stages sweep and sweep2 time: the tuner's space (``tuning.fwd_space``); in the CPU
    dry run a slice of it (the seg 64 configs and the first seg 256 one), so that the interpreter gets through."""
    from bkbench.harness import tuning

    space = tuning.fwd_space()
    if DEV == "cpu":
        return [c for c in space if c["seg"] == 64] + [c for c in space if c["seg"] == 256][:1]
    return space


def _time_fwd(cfg: dict, b: int, n: int, sc: bool) -> dict:
    from bkbench.kernels.bk import triton_fused as tf

    a, k, z = _inputs(b, n, sc)
    c = tf.FusedConfig.from_dict(cfg)
    g, fl = tf.forward(a, k, z, config=c, return_flags=True)
    ms = _median_ms(lambda: tf.forward(a, k, z, config=c))
    return {"cfg": cfg, "B": b, "N": n, "scalar": sc, "ms": ms, "flagged": int(fl.sum())}


def stage_sweep(out: dict, path: Path) -> dict:
    """Exhaustive forward sweep of the tuner's space on SWEEP_SHAPES (per-position k)."""
    from bkbench.kernels.bk import triton_fused as tf

    space = _fwd_space()
    jobs = [(c, b, n, False) for (b, n) in SWEEP_SHAPES for c in space]
    dflt = tf.FusedConfig().to_dict()
    jobs += [(dflt, b, n, sc) for (b, n) in ISSUE_SHAPES for sc in (False, True)]
    t0 = time.time()
    errs = precompile(jobs, workers=15)
    print(f"precompile {len(jobs)} jobs in {time.time() - t0:.0f}s, {len(errs)} errors")
    out.setdefault("compile_errors", []).extend(errs)
    bw = out["bandwidth"]["copy_GBps"]
    sweep = {}
    for (b, n) in SWEEP_SHAPES:
        res = {}
        for c in space:
            try:
                r = _time_fwd(c, b, n, False)
                res[json.dumps(c, sort_keys=True)] = r["ms"]
            except Exception as exc:
                res[json.dumps(c, sort_keys=True)] = math.inf
                out.setdefault("errors", []).append(f"sweep {c} B{b} N{n}: {exc}"[:400])
        sweep[f"{b}x{n}"] = res
        best = min(res, key=lambda k: res[k])
        gb = b * n * 16 / res[best] / 1e6
        print(f"sweep B{b} N{n}: best {res[best] * 1e3:.1f} us ({gb:.0f} GB/s, {100 * gb / bw:.1f}%) {best}")
    out["sweep"] = sweep
    _save(out, path)
    return sweep


def stage_tune(out: dict, sweep: dict, path: Path) -> dict:
    """Run the tuner (staged search, its own measurements) on SWEEP_SHAPES and compare with the sweep."""
    from bkbench.harness import tuning

    rows = []
    winners = {}
    for (b, n) in SWEEP_SHAPES:
        prob = tuning.TuneProblem(b, n, torch.float32, False, device=DEV)
        t0 = time.time()
        entry = tuning.tune(prob, budget_s=0.15, with_bwd=False, log=print)
        kk = json.dumps(entry["config"], sort_keys=True)
        ex = sweep.get(f"{b}x{n}", {})
        ex_best = min(ex.values()) if ex else math.inf
        # the tuner's choice as measured in the exhaustive sweep (same protocol, other moment)
        chosen_in_sweep = ex.get(kk, math.inf)
        rows.append({"B": b, "N": n, "tuned": entry["config"], "tuned_ms": entry["ms"],
                     "default_ms": entry["default_ms"], "searched": entry["searched"],
                     "exhaustive_best_ms": ex_best, "tuned_in_sweep_ms": chosen_in_sweep,
                     "within_pct": 100 * (chosen_in_sweep / ex_best - 1), "tune_s": time.time() - t0,
                     "check_error": entry["check_error"]})
        winners[(b, n)] = entry["config"]
        print(f"tune B{b} N{n}: {entry['config']} {entry['ms'] * 1e3:.1f} us (default {entry['default_ms'] * 1e3:.1f}),"
              f" searched {entry['searched']}, vs exhaustive best {ex_best * 1e3:.1f} us: "
              f"{rows[-1]['within_pct']:+.1f}%")
    out["tune"] = rows
    out["tune_cache"] = tuning.load_cache()
    _save(out, path)
    return winners


def stage_issue(out: dict, winners: dict, path: Path) -> None:
    """Forward (k and scalar) and fwd+bwd at the issue shapes with the default and the tuned configs."""
    from bkbench.kernels.bk import triton_fused as tf

    cfgs = [tf.FusedConfig().to_dict()] + [c for c in winners.values()]
    uniq = []
    for c in cfgs:
        if c not in uniq:
            uniq.append(c)
    have = {json.dumps(r["cfg"], sort_keys=True) for r in out.get("issue", [])}
    todo = [c for c in uniq if json.dumps(c, sort_keys=True) not in have]
    jobs = [(c, b, n, sc) for c in todo for (b, n) in ISSUE_SHAPES for sc in (False, True)]
    jobs += [("fb", c, b, n, sc) for c in todo for (b, n) in ISSUE_SHAPES for sc in (False, True)]
    t0 = time.time()
    errs = precompile(jobs, workers=15)
    print(f"precompile {len(jobs)} jobs in {time.time() - t0:.0f}s, {len(errs)} errors")
    bw = out["bandwidth"]["copy_GBps"]
    rows = out.setdefault("issue", [])
    done = {(json.dumps(r["cfg"], sort_keys=True), r["B"], r["N"], r["scalar"]) for r in rows}
    for (b, n) in ISSUE_SHAPES:
        for sc in (False, True):
            best = None
            for c in uniq:
                if (json.dumps(c, sort_keys=True), b, n, sc) in done:
                    continue
                try:
                    r = _time_fwd(c, b, n, sc)
                except Exception as exc:
                    out.setdefault("errors", []).append(f"issue {c} B{b} N{n}: {exc}"[:400])
                    continue
                r["default"] = c == uniq[0]
                r["pct_copy"] = _pct_copy(b, n, sc, r["ms"], bw)
                r["GBps"] = r["pct_copy"] * bw / 100
                rows.append(r)
                if best is None or r["ms"] < best["ms"]:
                    best = r
            if best is None:
                continue
            # fwd + bwd with this forward config and the default backward config
            try:
                a, k, z = _inputs(b, n, sc)
                a.requires_grad_(True)
                fc = tf.FusedConfig.from_dict(best["cfg"])
                with torch.no_grad():
                    gout = torch.randn(b, n, dtype=torch.complex64, device=DEV)

                step = _train_step(a, k, z, fc, tf.BwdConfig(), gout)
                step()
                ms_fb = _median_ms(step)
                best["fwdbwd_ms"] = ms_fb
                best["fwdbwd_ratio"] = ms_fb / best["ms"]
            except Exception as exc:
                out.setdefault("errors", []).append(f"fwdbwd B{b} N{n}: {exc}"[:400])
            fb_us = best.get("fwdbwd_ms", math.nan) * 1e3
            print(f"B{b:>6} N{n:>6} {'scalar' if sc else 'k     '} fwd {best['ms'] * 1e3:8.1f} us "
                  f"{best['GBps']:6.0f} GB/s {best['pct_copy']:5.1f}% flagged {best['flagged']} fwd+bwd "
                  f"{fb_us:8.1f} us (x{best.get('fwdbwd_ratio', math.nan):.2f}) "
                  f"{'default' if best['default'] else best['cfg']}", flush=True)
    _save(out, path)


def stage_baselines(out: dict, path: Path) -> None:
    from bkbench.kernels.bk import triton_fused as tf
    from bkbench.registry import default_registry

    reg = default_registry()
    rows = []
    for (b, n) in ([(1024, 4096), (16384, 1024)] if DEV == "cuda" else [(2, 64)]):
        a, k, z = _inputs(b, n, False)
        for name in ("thomas", "assoc_scan"):
            if name not in reg:
                continue
            fn = reg.get(name).fn
            try:
                fn(a, k, z)
                torch.cuda.synchronize()
                t0 = time.time()
                fn(a, k, z)
                torch.cuda.synchronize()
                one = time.time() - t0
                ms = _median_ms(lambda: fn(a, k, z), rep=max(50, int(3000 * one)))
                rows.append({"impl": name, "B": b, "N": n, "ms": ms})
                print(f"baseline {name} B{b} N{n}: {ms * 1e3:.0f} us")
            except Exception as exc:
                rows.append({"impl": name, "B": b, "N": n, "error": str(exc)[:300]})
        ms = _median_ms(lambda: tf.forward(a, k, z))
        rows.append({"impl": "triton_fused", "B": b, "N": n, "ms": ms})
        _save(out, path)
    out["baselines"] = rows
    _save(out, path)


def stage_bwdsweep(out: dict, path: Path) -> None:
    from bkbench.harness import tuning
    from bkbench.kernels.bk import triton_fused as tf

    rows = []
    b, n = (4096, 4096) if DEV == "cuda" else (2, 64)
    errs = precompile([("bwd", c, b, n, False) for c in tuning.bwd_space()], workers=6)
    out.setdefault("compile_errors", []).extend(errs)
    a, k, z = _inputs(b, n, False)
    g = tf.forward(a, k, z)
    go = torch.randn_like(g)
    for c in tuning.bwd_space():
        try:
            cfg = tf.BwdConfig.from_dict(c)
            tf.vjp(a, k, z, g, go, config=cfg)
            ms = _median_ms(lambda: tf.vjp(a, k, z, g, go, config=cfg))
            rows.append({"cfg": c, "ms": ms})
            print(f"bwd B{b} N{n} {c}: {ms * 1e3:.1f} us")
        except Exception as exc:
            rows.append({"cfg": c, "error": str(exc)[:300]})
    out["bwdsweep"] = rows
    _save(out, path)


TUNE_SHAPES = [(16384, 1024), (4096, 4096), (1024, 16384), (256, 65536), (8, 65536)]
FINAL_SHAPES = TUNE_SHAPES + [(1024, 4096), (16384, 4096)]
TUNE_COUPLINGS = (False, True)
TUNE_BWD = os.environ.get("TF_TUNE_BWD", "1") == "1"
if os.environ.get("TF_TUNE_SHAPES") == "sweep":  # the tuner only where the exhaustive sweep checks it (k only)
    TUNE_SHAPES = list(SWEEP_SHAPES)
    TUNE_COUPLINGS = (False,)
if DEV == "cpu":
    TUNE_SHAPES = [(2, 64), (1, 300)]
    FINAL_SHAPES = TUNE_SHAPES


def stage_tuneall(out: dict, path: Path) -> None:
    """The tuner on every TUNE_SHAPES x {k, scalar}: stage by stage for all problems, each stage's
    candidates compiled in parallel first; then the backward configs. Winners go to the cache."""
    from bkbench.harness import tuning

    probs = [tuning.TuneProblem(b, n, torch.float32, u, device=DEV) for (b, n) in TUNE_SHAPES for u in TUNE_COUPLINGS]
    tuners = [tuning.Tuner(p, budget_s=0.15, log=print) for p in probs]
    from bkbench.kernels.bk import triton_fused as tf

    dflt = tf.FusedConfig().to_dict()
    for st in (1, 2):
        t0 = time.time()
        extra = [(dflt, t.prob.batch, t.prob.n, t.prob.uniform) for t in tuners] if st == 2 else []
        errs = precompile([(c, t.prob.batch, t.prob.n, t.prob.uniform) for t in tuners
                           for c in tuning.distinct(t.candidates(), t.prob.batch, t.prob.n)] + extra)
        print(f"tune stage {st}: compiled in {time.time() - t0:.0f}s ({len(errs)} errors)", flush=True)
        for t in tuners:
            t.measure()
    t0 = time.time()
    if TUNE_BWD:
        errs = precompile([("bwd", c, t.prob.batch, t.prob.n, t.prob.uniform) for t in tuners
                           for c in tuning.bwd_space()])
        print(f"tune bwd: compiled in {time.time() - t0:.0f}s ({len(errs)} errors)", flush=True)
    rows = []
    for t in tuners:
        if TUNE_BWD:
            t.measure_bwd()
        e = t.finish()
        p = t.prob
        rows.append({"B": p.batch, "N": p.n, "scalar": p.uniform, **{k: v for k, v in e.items() if k != "when"},
                     "results": t.results, "bwd_results": t.bwd_results})
        print(f"tuned B{p.batch} N{p.n} {'scalar' if p.uniform else 'k'}: {e['config']} {e['ms'] * 1e3:.1f} us "
              f"(default {e['default_ms'] * 1e3:.1f}, x{e['default_ms'] / e['ms']:.2f}); bwd {e.get('bwd_config')} "
              f"{(e.get('bwd_ms') or math.nan) * 1e3:.1f} us "
              f"(default {(e.get('bwd_default_ms') or math.nan) * 1e3:.1f})",
              flush=True)
    out["tuneall"] = rows
    out["tune_cache"] = tuning.load_cache()
    _save(out, path)


def stage_sweep2(out: dict, path: Path) -> None:
    """Exhaustive sweep of the tuner's forward space on SWEEP_SHAPES; compare with the tuned choice."""
    from bkbench.harness import tuning

    spaces = {(b, n): tuning.distinct(_fwd_space(), b, n) for (b, n) in SWEEP_SHAPES}
    t0 = time.time()
    errs = precompile([(c, b, n, False) for (b, n) in SWEEP_SHAPES for c in spaces[(b, n)]])
    print(f"sweep: compiled in {time.time() - t0:.0f}s ({len(errs)} errors)", flush=True)
    cache = tuning.load_cache()
    rows = []
    for (b, n) in SWEEP_SHAPES:
        res = {}
        space = spaces[(b, n)]
        for c in space:
            try:
                res[json.dumps(c, sort_keys=True)] = _time_fwd(c, b, n, False)["ms"]
            except Exception as exc:
                res[json.dumps(c, sort_keys=True)] = math.inf
                out.setdefault("errors", []).append(f"sweep {c} B{b} N{n}: {exc}"[:300])
        best = min(res, key=lambda kk: res[kk])
        entry = cache.get(tuning.key(tuning.gpu_name(), torch.float32, False, b, n), {})
        # the sweep's time of the config that launches what the tuner chose (distinct() kept one per launch)
        mine = tuning.time_of(entry["config"], res, b, n) if entry else math.nan
        within = 100 * (mine / res[best] - 1)
        rows.append({"B": b, "N": n, "sweep": res, "best": json.loads(best), "best_ms": res[best],
                     "tuned": entry.get("config"), "tuned_in_sweep_ms": mine, "within_pct": within,
                     "searched": entry.get("searched"), "space": len(space)})
        print(f"sweep B{b} N{n}: exhaustive best {res[best] * 1e3:.1f} us {best}; tuner's choice "
              f"{mine * 1e3:.1f} us ({within:+.1f}%), searched {entry.get('searched')}/"
              f"{len(space)}", flush=True)
        out["sweep2"] = rows  # saved shape by shape: a cut-off run keeps what it measured
        _save(out, path)
    out["sweep2"] = rows
    _save(out, path)


def _looked_up_final() -> dict[tuple, tuple]:
    """(B, N, scalar) -> (forward config, backward config) that ``tuning.lookup`` gives for every FINAL_SHAPES x
    {k, scalar} (user cache, then the packaged table, then the defaults)."""
    from bkbench.harness import tuning

    tuning.clear_memo()
    cfgs = {}
    for (b, n) in FINAL_SHAPES:
        for sc in (False, True):
            a, k, z = _inputs(b, n, sc)
            cfgs[(b, n, sc)] = tuning.lookup(a, k)
    return cfgs


def stage_final(out: dict, path: Path) -> None:
    """The final table: tuned configs from the cache (defaults where a bucket is untuned)."""
    import triton.testing

    from bkbench.kernels.bk import triton_fused as tf

    cfgs = _looked_up_final()
    jobs = [("fb", {**fc.to_dict(), "bwd": bc.to_dict()}, b, n, sc) for (b, n, sc), (fc, bc) in cfgs.items()]
    t0 = time.time()
    errs = precompile(jobs)
    print(f"final: compiled in {time.time() - t0:.0f}s ({len(errs)} errors)", flush=True)
    bw = copy_bandwidth()
    out["bandwidth_final"] = bw
    rows = []
    for (b, n) in FINAL_SHAPES:
        for sc in (False, True):
            fc, bc = cfgs[(b, n, sc)]
            a, k, z = _inputs(b, n, sc)
            g, fl = tf.forward(a, k, z, config=fc, return_flags=True)
            ms = _median_ms(lambda: tf.forward(a, k, z, config=fc), rep=100)
            try:
                ms_graph = float(triton.testing.do_bench_cudagraph(lambda: tf.forward(a, k, z, config=fc), rep=50,
                                                                   return_mode="median"))
            except Exception as exc:
                ms_graph = math.nan
                out.setdefault("errors", []).append(f"graph B{b} N{n}: {exc}"[:300])
            a.requires_grad_(True)
            gout = torch.randn(b, n, dtype=torch.complex64, device=DEV)

            step = _train_step(a, k, z, fc, bc, gout)
            step()
            ms_fb = _median_ms(step, rep=100)
            gfb = _graph_ms(step)  # GPU time of forward + backward (the host's autograd path replayed away)
            host_us = _host_us(lambda: tf.forward(a, k, z, config=fc)) if b * n <= (1 << 20) else math.nan
            pct = _pct_copy(b, n, sc, ms, bw["copy_GBps"])
            r = {"B": b, "N": n, "scalar": sc, "cfg": fc.to_dict(), "bwd_cfg": bc.to_dict(), "ms": ms,
                 "ms_graph": ms_graph, "GBps": pct * bw["copy_GBps"] / 100, "pct_copy": pct,
                 "fwdbwd_ms": ms_fb, "fwdbwd_ratio": ms_fb / ms, "graph_fwdbwd_ms": gfb,
                 "graph_ratio": gfb / ms_graph if ms_graph == ms_graph and ms_graph > 0 else math.nan,
                 "host_us_per_call": host_us, "flagged": int(fl.sum())}
            rows.append(r)
            print(f"FINAL B{b:>6} N{n:>6} {'scalar' if sc else 'k     '} fwd {ms * 1e3:7.1f} us "
                  f"(graph {ms_graph * 1e3:6.1f}) {r['GBps']:6.0f} GB/s {r['pct_copy']:5.1f}% | "
                  f"fwd+bwd {ms_fb * 1e3:7.1f} us x{r['fwdbwd_ratio']:.2f} graph {gfb * 1e3:7.1f} "
                  f"x{r['graph_ratio']:.2f} | host {host_us:5.1f} us/call | flagged {r['flagged']}", flush=True)
    out["final"] = rows
    _save(out, path)


BWDLIN_MODES = (1, 2)  # BwdConfig.lin_exact modes compared by stage_bwdlin


def stage_bwdlin(out: dict, path: Path) -> None:
    """The backward's cross-segment F/R carries, ``BwdConfig.lin_exact`` 1 (exact affine scans) against 2 (two
    segments composed, bounded): backward alone and forward + backward under CUDA-graph replay, at every
    FINAL_SHAPES x {k, scalar}, with the looked-up forward config and the looked-up backward tile."""
    import dataclasses

    from bkbench.kernels.bk import triton_fused as tf

    cases = [(b, n, sc, fc, dataclasses.replace(bc, lin_exact=lin))
             for (b, n, sc), (fc, bc) in _looked_up_final().items() for lin in BWDLIN_MODES]
    t0 = time.time()
    errs = precompile([("fb", {**fc.to_dict(), "bwd": bc.to_dict()}, b, n, sc) for (b, n, sc, fc, bc) in cases])
    print(f"bwdlin: compiled in {time.time() - t0:.0f}s ({len(errs)} errors)", flush=True)
    rows = []
    for (b, n, sc, fc, bc) in cases:
        a, k, z = _inputs(b, n, sc)
        g = tf.forward(a, k, z, config=fc)
        gout = torch.randn(b, n, dtype=torch.complex64, device=DEV)
        try:
            s_ref = tf.vjp(a, k, z, g, gout, config=bc, force_exact=True)
            got, fl = tf.vjp(a, k, z, g, gout, config=bc, return_flags=True)
            err = float((got - s_ref).abs().max() / s_ref.abs().max())
            bwd_ms = _median_ms(lambda: tf.vjp(a, k, z, g, gout, config=bc), rep=100)
            bwd_graph = _graph_ms(lambda: tf.vjp(a, k, z, g, gout, config=bc))
            fwd_graph = _graph_ms(lambda: tf.forward(a, k, z, config=fc))
            a.requires_grad_(True)
            fb_graph = _graph_ms(_train_step(a, k, z, fc, bc, gout))
        except Exception as exc:
            rows.append({"B": b, "N": n, "scalar": sc, "bwd_cfg": bc.to_dict(), "error": str(exc)[:300]})
            continue
        r = {"B": b, "N": n, "scalar": sc, "cfg": fc.to_dict(), "bwd_cfg": bc.to_dict(), "lin_exact": bc.lin_exact,
             "bwd_ms": bwd_ms, "bwd_graph_ms": bwd_graph, "fwd_graph_ms": fwd_graph, "fwdbwd_graph_ms": fb_graph,
             "graph_ratio": fb_graph / fwd_graph if fwd_graph > 0 else math.nan, "flagged": int(fl.sum()),
             "err_vs_exact_kernel": err}
        rows.append(r)
        print(f"BWDLIN B{b:>6} N{n:>6} {'scalar' if sc else 'k     '} lin {bc.lin_exact} "
              f"bwd {bwd_ms * 1e3:7.1f} us (graph {bwd_graph * 1e3:6.1f}) | fwd {fwd_graph * 1e3:6.1f} "
              f"fwd+bwd {fb_graph * 1e3:7.1f} x{r['graph_ratio']:.2f} | flagged {r['flagged']} err {err:.1e}",
              flush=True)
        out["bwdlin"] = rows
    out["bwdlin"] = rows
    _save(out, path)


def stage_base2(out: dict, path: Path) -> None:
    from bkbench.kernels.bk import triton_fused as tf
    from bkbench.registry import default_registry

    reg = default_registry()
    rows = []
    for (b, n) in ([(1024, 4096), (16384, 1024), (4096, 4096)] if DEV == "cuda" else [(2, 64)]):
        a, k, z = _inputs(b, n, False)
        for name in ("thomas", "assoc_scan"):
            fn = reg.get(name).fn
            try:
                fn(a, k, z)
                torch.cuda.synchronize()
                t0 = time.time()
                fn(a, k, z)
                torch.cuda.synchronize()
                one = time.time() - t0
                ms = _median_ms(lambda: fn(a, k, z), rep=max(50, int(2500 * one)))
                rows.append({"impl": name, "B": b, "N": n, "ms": ms})
            except Exception as exc:
                rows.append({"impl": name, "B": b, "N": n, "error": str(exc)[:300]})
        from bkbench.harness import tuning

        fc, _ = tuning.lookup(a, k)
        ms = _median_ms(lambda: tf.forward(a, k, z, config=fc), rep=100)
        rows.append({"impl": "triton_fused", "B": b, "N": n, "ms": ms, "cfg": fc.to_dict()})
        line = " ".join(f"{r['impl']} {r.get('ms', math.nan) * 1e3:.0f} us"
                        for r in rows if r["B"] == b and r["N"] == n)
        print(f"baselines B{b} N{n}: {line}", flush=True)
    out["baselines2"] = rows
    _save(out, path)


# Store-mode / tile sweeps (stage "store"). Set 1 (run 2a): output store modes x tiles at L 16; set 2 (run 2b):
# one-warp tiles (no cross-warp barriers) with 16- and 32-position segments, and one-warp backward tiles.
# Tiles: (seg, warps, L, M1); backward: (seg, L, warps).
STORE_SETS = {
    1: {"shapes": [(16384, 1024), (4096, 4096), (1024, 16384), (256, 65536), (16384, 4096), (8, 65536)],
        "tiles": [(64, 2, 16, 16), (128, 4, 16, 16), (64, 1, 16, 16), (32, 1, 16, 16), (256, 4, 16, 16)],
        "stores": (0, 1, 2), "bwd": [(128, 8, 4), (64, 8, 2), (256, 8, 4), (64, 16, 2)], "bwd_stores": (0, 1),
        "bwd_shapes": [(16384, 1024), (4096, 4096)]},
    2: {"shapes": [(16384, 1024), (4096, 4096), (1024, 16384), (256, 65536), (16384, 4096), (8, 65536)],
        "tiles": [(32, 1, 16, 16), (32, 1, 32, 16), (64, 1, 16, 16), (16, 1, 16, 16), (64, 2, 16, 16)],
        "stores": (0,), "bwd": [(32, 8, 1), (32, 16, 1), (64, 8, 1), (64, 8, 2), (16, 16, 1)], "bwd_stores": (0,),
        "bwd_shapes": [(16384, 1024), (4096, 4096), (256, 65536)]},
}
STORE_SET = int(os.environ.get("TF_STORE_SET", "2"))
if DEV == "cpu":
    STORE_SETS = {k: {**v, "shapes": [(2, 64)], "tiles": v["tiles"][:2], "bwd": v["bwd"][:1], "bwd_shapes": [(2, 64)]}
                  for k, v in STORE_SETS.items()}

SEQ_SHAPES = [(16384, 1024), (1024, 1024), (16384, 768), (32768, 520)]
if DEV == "cpu":
    SEQ_SHAPES = [(2, 1000)]


def stage_seq(out: dict, path: Path) -> None:
    """N = 1024 (chains of one to two tiles): the two-tile kernel (seq 2, at the register cap and uncapped)
    against halo'd chunks (seq 1) and one 1024-position tile (L 32), per-position k and scalar, eager (L2
    flushed) and CUDA-graph replay, with the fraction of copy bandwidth."""
    from bkbench.kernels.bk import triton_fused as tf

    base = tf.FusedConfig().to_dict()
    cfgs = {"seq2_cap128": {**base, "seq": 2, "maxnreg": 0}, "seq2_nocap": {**base, "seq": 2, "maxnreg": 255},
            "seq1_halo_L16": {**base, "seq": 1}, "seq1_L32": {**base, "seq": 1, "L": 32},
            "seq2_cap128_store2": {**base, "seq": 2, "store": 2}}
    t0 = time.time()
    errs = precompile([(c, b, n, sc) for (b, n) in SEQ_SHAPES for c in cfgs.values() for sc in (False, True)])
    print(f"seq: compiled in {time.time() - t0:.0f}s ({len(errs)} errors)", flush=True)
    bw = out.get("bandwidth", {}).get("copy_GBps", math.nan)
    rows = []
    for (b, n) in SEQ_SHAPES:
        for sc in (False, True):
            a, k, z = _inputs(b, n, sc)
            for name, cfg in cfgs.items():
                c = tf.FusedConfig.from_dict(cfg)
                try:
                    g, fl = tf.forward(a, k, z, config=c, return_flags=True)
                    ms = _median_ms(lambda: tf.forward(a, k, z, config=c), rep=100)
                    gms = _graph_ms(lambda: tf.forward(a, k, z, config=c))
                except Exception as exc:
                    out.setdefault("errors", []).append(f"seq {name} B{b} N{n}: {exc}"[:300])
                    continue
                r = {"B": b, "N": n, "scalar": sc, "name": name, "cfg": cfg, "ms": ms, "graph_ms": gms,
                     "pct_copy": _pct_copy(b, n, sc, ms, bw), "flagged": int(fl.sum())}
                rows.append(r)
                print(f"SEQ B{b:>6} N{n:>5} {'scalar' if sc else 'k     '} {name:20s} {ms * 1e3:7.1f} us "
                      f"(graph {gms * 1e3:6.1f}) {r['pct_copy']:5.1f}% flagged {r['flagged']}", flush=True)
    out["seq"] = rows
    _save(out, path)


def stage_host(out: dict, path: Path) -> None:
    """Host cost of one eager forward at B = 8, N = 65536 (the GPU finishes each call before the next is issued):
    ``triton_fused`` (table lookup included) and ``forward`` with a fixed config, back to back, then a cProfile
    of the former (the top entries by own time, kept in the JSON)."""
    import cProfile
    import io
    import pstats

    from bkbench.kernels.bk import triton_fused as tf

    b, n, calls = (8, 65536, 500) if DEV == "cuda" else (2, 64, 2)  # the CPU dry run: the interpreter is slow
    a, k, z = _inputs(b, n, True)
    cfg = tf.FusedConfig()
    r = {"triton_fused_us": _host_us(lambda: tf.triton_fused(a, k, z), calls=1000),
         "forward_us": _host_us(lambda: tf.forward(a, k, z, config=cfg), calls=1000)}
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        tf.triton_fused(a, k, z)
    prof.disable()
    if DEV == "cuda":
        torch.cuda.synchronize()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
    r["profile_top"] = buf.getvalue()[-12000:]
    print(f"HOST triton_fused {r['triton_fused_us']:.1f} us/call, forward {r['forward_us']:.1f} us/call", flush=True)
    print(buf.getvalue()[:6000], flush=True)
    out["host"] = r
    _save(out, path)


NCU_CASES = [  # (name, partial config, B, N, scalar): the scalar coupling at N = 1024 is the shape below 70 %
    ("N1024_halo_scalar", {}, 16384, 1024, True),
    ("N1024_seq2_scalar", {"seq": 2}, 16384, 1024, True),
    ("N1024_L32_scalar", {"L": 32}, 16384, 1024, True),
    ("N4096_default_scalar", {}, 4096, 4096, True),
]
NCU_SECTIONS = ("WarpStateStats", "SchedulerStats", "Occupancy", "LaunchStats", "SpeedOfLight")
if DEV == "cpu":
    NCU_CASES = [("cpu", {}, 2, 64, False)]


def stage_ncu(out: dict, path: Path) -> None:
    """Nsight Compute on one forward launch per NCU_CASES entry (warp stall reasons, issue activity, occupancy,
    memory throughput), ``--clock-control none``; the raw CSV of each is kept in the JSON."""
    import shutil
    import subprocess

    ncu = shutil.which("ncu") or next((str(p) for p in Path("/opt/nvidia").glob("nsight-compute/*/ncu")), None)
    rows = []
    for name, cfg, b, n, sc in NCU_CASES:
        target = [sys.executable, str(ROOT / "bench" / "triton_fused_ncu.py"), "--batch", str(b), "--n", str(n),
                  "--config", json.dumps(cfg)] + (["--scalar"] if sc else [])
        if ncu is None or DEV == "cpu":  # no profiler: run the target alone (checks that it works)
            proc = subprocess.run(target, capture_output=True, text=True, timeout=600)
            rows.append({"name": name, "error": "ncu not found" if ncu is None else "cpu dry run",
                         "target_stdout": proc.stdout[-2000:], "rc": proc.returncode})
            continue
        cmd = [ncu, "--clock-control", "none", "--csv", "--page", "details", "-k", "regex:_fwd_(fast|seq2)",
               "--launch-skip", "1", "--launch-count", "1"]
        for sec in NCU_SECTIONS:
            cmd += ["--section", sec]
        t0 = time.time()
        try:
            proc = subprocess.run(cmd + target, capture_output=True, text=True, timeout=300)
            rows.append({"name": name, "cfg": cfg, "B": b, "N": n, "scalar": sc, "rc": proc.returncode,
                         "csv": proc.stdout[-60000:], "stderr": proc.stderr[-2000:], "s": time.time() - t0})
            print(f"ncu {name}: rc {proc.returncode}, {time.time() - t0:.0f}s", flush=True)
        except subprocess.TimeoutExpired:
            rows.append({"name": name, "error": "ncu timed out after 300 s"})
        out["ncu"] = rows
        _save(out, path)
    out["ncu"] = rows
    _save(out, path)


def _host_us(fn, calls: int = 300) -> float:
    """Back-to-back calls without an L2 flush, one synchronize at the end: microseconds per call (for a small
    problem this is the host's launch path, since the GPU finishes each call before the next is issued)."""
    if DEV == "cpu":
        return math.nan
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls * 1e6


def _graph_ms(fn) -> float:
    if DEV == "cpu":
        return math.nan
    import triton.testing

    try:
        return float(triton.testing.do_bench_cudagraph(fn, rep=40, return_mode="median"))
    except Exception:
        return math.nan


def stage_store(out: dict, path: Path) -> None:
    """Tile x output store mode sweep of the forward (FusedConfig.store 0 / 1 / 2), backward tiles x store, then
    the forward + backward of the best forward and best backward per shape, in eager mode (L2 flushed) and
    under CUDA-graph replay. ``TF_STORE_SET`` picks the sweep (STORE_SETS)."""
    from bkbench.kernels.bk import triton_fused as tf

    cfgset = STORE_SETS[STORE_SET]
    out["store_set"] = {"id": STORE_SET, **cfgset}

    def fcfg(seg, w, L, m1, st):
        return {"seg": seg, "L": L, "H": max(1, 16 // L), "M1": m1, "warps": w, "stages": 1, "maxpass": 4,
                "store": st}

    def bcfg(seg, L, w, st):
        return {"seg": seg, "L": L, "H": max(1, 16 // L), "M1": L, "warps": w, "stages": 1, "maxpass": 4,
                "store": st, "lin_exact": 1}

    fwd_cfgs = [fcfg(*t, st) for t in cfgset["tiles"] for st in cfgset["stores"]]
    bwd_cfgs = [bcfg(*c, st) for c in cfgset["bwd"] for st in cfgset["bwd_stores"]]
    jobs = [(c, b, n, sc) for (b, n) in cfgset["shapes"] for sc in (False, True) for c in fwd_cfgs]
    jobs += [("bwd", c, b, n, False) for (b, n) in cfgset["bwd_shapes"] for c in bwd_cfgs]
    t0 = time.time()
    errs = precompile(jobs)
    print(f"store: compiled {len(jobs)} jobs in {time.time() - t0:.0f}s ({len(errs)} errors)", flush=True)
    out.setdefault("compile_errors", []).extend(errs)
    out["bandwidth_store"] = bw = copy_bandwidth()
    rows = []
    for (b, n) in cfgset["shapes"]:
        for sc in (False, True):
            a, k, z = _inputs(b, n, sc)
            for cd in fwd_cfgs:
                c = tf.FusedConfig.from_dict(cd)
                try:
                    g, fl = tf.forward(a, k, z, config=c, return_flags=True)
                    ms = _median_ms(lambda: tf.forward(a, k, z, config=c))
                    gms = _graph_ms(lambda: tf.forward(a, k, z, config=c)) if b * n < (1 << 22) else math.nan
                    r = {"B": b, "N": n, "scalar": sc, "cfg": c.to_dict(), "ms": ms, "graph_ms": gms,
                         "pct_copy": _pct_copy(b, n, sc, ms, bw["copy_GBps"]),
                         "flagged": int(fl.sum())}
                except Exception as exc:
                    r = {"B": b, "N": n, "scalar": sc, "cfg": c.to_dict(), "error": str(exc)[:300]}
                rows.append(r)
                print(f"store fwd B{b} N{n} {'sc' if sc else 'k '} seg{c.seg} w{c.warps} L{c.L} M1 {c.M1} "
                      f"store{c.store}: {r.get('ms', math.nan) * 1e3:7.1f} us ({r.get('pct_copy', math.nan):4.1f}%)"
                      f" graph {r.get('graph_ms', math.nan) * 1e3:6.1f}", flush=True)
    out["store_fwd"] = rows
    _save(out, path)
    brows = []
    for (b, n) in cfgset["bwd_shapes"]:
        a, k, z = _inputs(b, n, False)
        g = tf.forward(a, k, z)
        go = torch.randn_like(g)
        for cd in bwd_cfgs:
            bc = tf.BwdConfig.from_dict(cd)
            try:
                tf.vjp(a, k, z, g, go, config=bc)
                ms = _median_ms(lambda: tf.vjp(a, k, z, g, go, config=bc))
                r = {"B": b, "N": n, "cfg": bc.to_dict(), "ms": ms}
            except Exception as exc:
                r = {"B": b, "N": n, "cfg": bc.to_dict(), "error": str(exc)[:300]}
            brows.append(r)
            print(f"store bwd B{b} N{n} seg{bc.seg} L{bc.L} w{bc.warps} store{bc.store}: "
                  f"{r.get('ms', math.nan) * 1e3:7.1f} us", flush=True)
    out["store_bwd"] = brows
    _save(out, path)

    def best_bwd(n):
        """The fastest backward at the measured shape nearest in N (log scale)."""
        ok = [r for r in brows if "ms" in r]
        if not ok:
            return None
        near = min({r["N"] for r in ok}, key=lambda m: abs(math.log2(m) - math.log2(n)))
        return min((r for r in ok if r["N"] == near), key=lambda r: r["ms"])

    frows = []
    for (b, n) in cfgset["shapes"]:
        for sc in (False, True):
            cand = [r for r in rows if r["B"] == b and r["N"] == n and r["scalar"] == sc and "ms" in r]
            bb = best_bwd(n)
            if not cand or bb is None:
                continue
            fr = min(cand, key=lambda r: r["ms"])
            fc = tf.FusedConfig.from_dict(fr["cfg"])
            bc = tf.BwdConfig.from_dict(bb["cfg"])
            a, k, z = _inputs(b, n, sc)
            a.requires_grad_(True)
            gout = torch.randn(b, n, dtype=torch.complex64, device=DEV)

            step = _train_step(a, k, z, fc, bc, gout)
            try:
                step()
                ms_fb = _median_ms(step)
                with torch.no_grad():
                    gf = _graph_ms(lambda: tf.forward(a, k, z, config=fc))
                gfb = _graph_ms(step)
                r = {"B": b, "N": n, "scalar": sc, "cfg": fc.to_dict(), "bwd_cfg": bc.to_dict(), "fwd_ms": fr["ms"],
                     "fwdbwd_ms": ms_fb, "ratio": ms_fb / fr["ms"], "graph_fwd_ms": gf, "graph_fwdbwd_ms": gfb,
                     "graph_ratio": gfb / gf if gf == gf and gf > 0 else math.nan}
            except Exception as exc:
                r = {"B": b, "N": n, "scalar": sc, "error": str(exc)[:300]}
            frows.append(r)
            print(f"store fb B{b} N{n} {'sc' if sc else 'k '}: fwd {r.get('fwd_ms', math.nan) * 1e3:7.1f} fwd+bwd "
                  f"{r.get('fwdbwd_ms', math.nan) * 1e3:7.1f} x{r.get('ratio', math.nan):.2f} | graph fwd "
                  f"{r.get('graph_fwd_ms', math.nan) * 1e3:7.1f} fwd+bwd "
                  f"{r.get('graph_fwdbwd_ms', math.nan) * 1e3:7.1f} x{r.get('graph_ratio', math.nan):.2f}", flush=True)
    out["store_fb"] = frows
    _save(out, path)


@dataclass(frozen=True)
class Stage:
    """One entry of :data:`STAGES`. ``run`` is called with the run's state named by ``needs``, in that order:
    ``out`` (the JSON dict), ``path`` (the output folder), ``sweep`` (stage sweep's times, {} unless it ran
    earlier in this run), ``winners`` (stage tune's configs, likewise); ``gives``: the state that ``run``'s return
    value becomes, for a later stage's ``needs``."""

    run: Callable[..., Any]
    about: str
    needs: tuple[str, ...] = ("out", "path")
    gives: str | None = None


STAGES: dict[str, Stage] = {
    "mem": Stage(stage_memtest, "the tile pattern alone (load, split into columns, join, store) against plain loads",
                 ("out",)),
    "gate": Stage(stage_gate, "the project's correctness gate on CUDA for triton_fused (value + gradient, 2 seeds)",
                  ("out",)),
    "grad": Stage(stage_gradcheck, "forward and backward (S) error against the float64 references", ("out",)),
    "check": Stage(stage_check, "G against float64 at awkward and large shapes, fast path and force_exact", ("out",)),
    "sweep": Stage(stage_sweep, "exhaustive forward sweep of the tuner's space on SWEEP_SHAPES", gives="sweep"),
    "tune": Stage(stage_tune, "the tuner on SWEEP_SHAPES against the sweep's times", ("out", "sweep", "path"),
                  gives="winners"),
    "issue": Stage(stage_issue, "forward and fwd+bwd at the issue shapes, default config and tune's winners",
                   ("out", "winners", "path")),
    "base": Stage(stage_baselines, "the thomas and assoc_scan baselines against the default forward"),
    "bwd": Stage(stage_bwdsweep, "every backward config of the tuner's space at one shape"),
    "tuneall": Stage(stage_tuneall, "the tuner on TUNE_SHAPES x {k, scalar}, candidates compiled in parallel"),
    "sweep2": Stage(stage_sweep2, "exhaustive forward sweep on SWEEP_SHAPES against the tuner's cached choice"),
    "final": Stage(stage_final, "the final table with the looked-up configs (eager, graph, fwd+bwd, host)"),
    "bwdlin": Stage(stage_bwdlin, "the backward's lin_exact 1 against 2 at every FINAL_SHAPES x {k, scalar}"),
    "base2": Stage(stage_base2, "the baselines against the forward with the looked-up config"),
    "store": Stage(stage_store, "tile x output store mode sweep, forward and backward (TF_STORE_SET)"),
    "seq": Stage(stage_seq, "N = 1024 layouts: two-tile kernel (seq 2) against halo'd chunks and one L 32 tile"),
    "host": Stage(stage_host, "host cost of one eager forward (back-to-back calls, then a cProfile)"),
    "ncu": Stage(stage_ncu, "Nsight Compute on one forward launch per NCU_CASES entry"),
}
DEFAULT_STAGES = "gate,tuneall,final,base2,sweep2,grad"


def _stage_list() -> str:
    """The stage table for ``--help``."""
    lines = ["stages (--stage, comma-separated, run in the order given):"]
    for name, st in STAGES.items():
        uses = [k for k in st.needs if k not in ("out", "path")]
        lines.append(f"  {name:8s} {st.about}" + (f" [uses: {', '.join(uses)}]" if uses else ""))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=_stage_list(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="output folder (default: $OUT or .)")
    ap.add_argument("--stage", default=DEFAULT_STAGES, help=f"stages to run (default: {DEFAULT_STAGES})")
    ap.add_argument("--deadline", type=float, default=330.0, help="start no stage after this many seconds")
    args = ap.parse_args()
    stages = [st for st in args.stage.split(",") if st]
    unknown = [st for st in stages if st not in STAGES]
    if unknown:
        ap.error(f"--stage: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    path = Path(args.out)
    os.environ.setdefault("BKBENCH_CACHE_DIR", str(path / "cache"))
    from bkbench.harness.env import environment

    out: dict = {"environment": environment(measure_bandwidth=False)}
    t0 = time.time()
    out["bandwidth"] = copy_bandwidth()
    bwd = out["bandwidth"]
    print(f"copy {bwd['copy_GBps']:.0f} GB/s, torch.complex(a,k) {bwd['complex_ab_GBps']:.0f} GB/s")
    state: dict[str, Any] = {"out": out, "path": path, "sweep": {}, "winners": {}}
    try:
        for name in stages:
            stage = STAGES[name]
            ts = time.time()
            if ts - t0 > args.deadline:
                print(f"[skip stage {name}: past the deadline]")
                out.setdefault("skipped", []).append(name)
                continue
            try:
                result = stage.run(*(state[k] for k in stage.needs))
                if stage.gives:
                    state[stage.gives] = result
            except Exception as exc:
                import traceback

                traceback.print_exc()
                out.setdefault("errors", []).append(f"stage {name}: {type(exc).__name__}: {exc}"[:600])
            out.setdefault("stage_s", {})[name] = time.time() - ts
            print(f"[stage {name} {time.time() - ts:.0f}s, total {time.time() - t0:.0f}s]", flush=True)
            _save(out, path)
    finally:
        out["wall_s"] = time.time() - t0
        _save(out, path)
    print(f"done in {out['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
