"""Device script for the baselines: the correctness battery on CUDA, then a first small timing table.

Run on a GPU machine from the repository root (fla-core installed or on PYTHONPATH)::

    PYTHONPATH=$PWD python3 bench/baselines_gpu.py all --out OUTDIR [--budget 270]

A kernel fault ("misaligned address", "illegal memory access") poisons the whole CUDA context, so every
(baseline, dtype) battery runs in its own subprocess (several at once; fla's autotune cache off so the
checks do not pick fla's timing configs), and the timing runs in one subprocess
per group, one group at a time. A (baseline, dtype) is timed only when its battery passed.

Writes, under OUTDIR: ``env.json``, ``check.json`` (GateResult rows of every battery), ``timing.json`` (one
row per (baseline, case): median/p20/p80 from triton.testing.do_bench with its L2 flush, measured peak
memory above the inputs' baseline, the analytic model) and prints both tables. Each phase stops starting
work when ``--budget`` seconds have passed since the start. The full N = 2^8..2^16 sweep with energy is
the suite runner's job; this is the first look.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GROUPS = ("ssm", "attention", "flex", "layers")


# -- checks ---------------------------------------------------------------------------------------------
def check_one(impl: str, dtype: str, out: Path, device: str = "cuda") -> None:
    from bkbench.harness.baselines import check

    res = check(impl, device, seeds=(0, 1), dtypes=(DTYPES[dtype],))
    (out / f"check_{impl}_{dtype}.json").write_text(json.dumps([asdict(r) for r in res], default=str))


def run_checks(work: Path, deadline: float, device: str = "cuda") -> list[dict[str, Any]]:
    from bkbench.registry import default_registry

    reg = default_registry()
    jobs = []
    for rec in reg.implementations(None):
        if rec.kind == "bk":
            continue
        for name, dt in DTYPES.items():
            if dt in rec.dtypes:
                jobs.append((rec.name, name))
    jobs.sort(key=lambda j: 0 if ("flex" in j[0] or "fla" in j[0]) else 1)  # compile/autotune-heavy first
    # fla's autotune cache off: configs picked under parallel checks must not be reused by the timing
    env = dict(os.environ, FLA_CACHE_RESULTS="0", PYTHONUNBUFFERED="1")

    def one(job: tuple[str, str]) -> tuple[str, str, int, str]:
        impl, dt = job
        left = deadline - time.perf_counter()
        if left < 10:
            return impl, dt, -1, "not run: time budget spent"
        cmd = [sys.executable, __file__, "check-one", "--impl", impl, "--dtype", dt, "--out", str(work),
               "--device", device]
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=min(left, 150))
            return impl, dt, p.returncode, (p.stdout + p.stderr)[-600:]
        except subprocess.TimeoutExpired:
            return impl, dt, -2, "timed out"

    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        for impl, dt, rc, tail in pool.map(one, jobs):
            path = work / f"check_{impl}_{dt}.json"
            res = json.loads(path.read_text()) if path.exists() else []
            if not res:
                res = [{"impl": impl, "case": f"battery {dt}", "key": "", "check": "value", "status": "fail",
                        "error": None, "tolerance": None, "detail": f"battery process rc={rc}: {tail}",
                        "seconds": 0.0}]
            rows += res
            n_pass = sum(r["status"] == "pass" for r in res)
            n_fail = sum(r["status"] == "fail" for r in res)
            errs = [r["error"] for r in res if r["error"] is not None and math.isfinite(r["error"])]
            worst = max(errs) if errs else float("nan")
            skips = sorted({r["detail"] for r in res if r["status"] == "skip"})
            print(f"check {impl:30s} {dt:5s} pass {n_pass:3d} fail {n_fail:3d} worst {worst:.1e} "
                  f"{'; '.join(skips)[:120]}", flush=True)
            for r in [r for r in res if r["status"] == "fail"][:4]:
                print(f"   FAIL {r['case']} [{r['key']}] {r['check']}: {str(r['detail'])[:400]}", flush=True)
    return rows


def verdicts(rows: list[dict[str, Any]]) -> dict[str, str]:
    """(impl:dtype) -> pass / fail / skip."""
    out: dict[str, str] = {}
    for r in rows:
        key = f"{r['impl']}:{_dtype_of(r)}"
        prev = out.get(key, "skip")
        if r["status"] == "fail" or prev == "fail":
            out[key] = "fail"
        elif r["status"] == "pass":
            out[key] = "pass"
    return out


def _dtype_of(row: dict[str, Any]) -> str:
    for part in str(row.get("key", "")).split("_") + str(row.get("case", "")).split():
        if part in DTYPES:
            return part
    return "?"


# -- timing ---------------------------------------------------------------------------------------------
def _bench(fn: Any) -> tuple[float, float, float]:
    from triton.testing import do_bench

    q = do_bench(fn, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])
    return q[0] * 1e-3, q[1] * 1e-3, q[2] * 1e-3


def _measure(name: str, make: Any, case: Any, rows: list[dict[str, Any]]) -> None:
    from bkbench.harness.baselines import Declined

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    row: dict[str, Any] = {"impl": name, "case": case.key, "B": case.B, "N": case.N, "d": case.d,
                           "dtype": str(case.dtype).replace("torch.", ""), "mode": case.mode,
                           "sparsity": case.sparsity}
    t0 = time.perf_counter()
    prep = None
    try:
        prep = make()
        inputs_bytes = torch.cuda.memory_allocated() - base
        prep.fn()  # compile / autotune / first touch
        torch.cuda.synchronize()
        row["peak_bytes"] = torch.cuda.max_memory_allocated() - base
        row["inputs_bytes"] = inputs_bytes
        med, p20, p80 = _bench(prep.fn)
        row.update(status="ok", median_s=med, p20_s=p20, p80_s=p80, model=prep.model.as_dict(),
                   info={k: v for k, v in prep.info.items() if k != "options"})
        row["tflops"] = prep.model.flops_for(case.mode) / med / 1e12
        row["gbs_min"] = prep.model.bytes_min / med / 1e9 if case.mode == "fwd" else None
    except Declined as why:
        row.update(status="skip", reason=str(why))
    except torch.OutOfMemoryError as exc:
        row.update(status="oom", reason=str(exc).split("\n")[0][:200])
    except Exception as exc:
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:400], tb=traceback.format_exc()[-1500:])
        if type(exc).__name__ == "AcceleratorError":
            rows.append(row)
            raise
    row["wall_s"] = time.perf_counter() - t0
    del prep
    torch.cuda.empty_cache()
    rows.append(row)
    t = row.get("median_s")
    shown = f"{t * 1e3:10.3f} ms" if t else f"{row['status']:>13}"
    mem = row.get("peak_bytes")
    print(f"  {name:32s} {case.key:46s} {shown} {'' if mem is None else f'{mem / 2**20:9.1f} MiB'} "
          f"{str(row.get('reason', ''))[:110]}", flush=True)


class _BKPrepared:
    """BK-core at equal work (B·d chains of length N) through bkbench.bk_core, for context in the table."""

    def __init__(self, case: Any, impl: str) -> None:
        from bkbench.api import bk_core
        from bkbench.harness.baselines.models import bk_core_model

        chains = case.B * case.d
        gen = torch.Generator(device="cuda").manual_seed(case.seed)
        self.a = -2.0 + 0.5 * torch.randn(chains, case.N, generator=gen, device="cuda")
        self.k = torch.ones(chains, max(case.N - 1, 0), device="cuda")
        self.model = bk_core_model(chains, case.N)
        self.info = {"impl": impl}
        if case.mode == "fwd+bwd":
            self.a.requires_grad_(True)
            gout = torch.randn(chains, case.N, dtype=torch.complex64, device="cuda")

            def fn() -> Any:
                self.a.grad = None
                g = bk_core(self.a, self.k, 1.0, 1j, impl=impl, check=False)
                g.backward(gout)
                return g
        else:

            def fn() -> Any:
                with torch.no_grad():
                    return bk_core(self.a, self.k, 1.0, 1j, impl=impl, check=False)

        self.fn = fn


def time_group(group: str, verdict: dict[str, str], out: Path, deadline: float) -> None:
    from bkbench.harness.baselines import Case, prepare, prepare_layer

    rows: list[dict[str, Any]] = []
    path = out / f"timing_{group}.json"

    def save() -> None:
        path.write_text(json.dumps(rows, indent=1, default=str))

    def go(name: str, case: Any) -> bool:
        if time.perf_counter() > deadline:
            return False
        dt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float64: "fp64", torch.float16: "fp16"}
        v = verdict.get(f"{name}:{dt[case.dtype]}")
        if v == "fail":
            rows.append({"impl": name, "case": case.key, "status": "not-checked",
                         "reason": "its CUDA battery failed or was not run: not timed"})
            return False
        return True

    d, B = 1024, 4
    try:
        if group == "ssm":
            from bkbench.dispatch import choose
            from bkbench.harness.baselines.layers import differentiable_bk_impl
            from bkbench.registry import default_registry

            try:
                bk_fwd = choose("cuda", torch.float32, B * d, 4096, default_registry()).impl
                bk_bwd = differentiable_bk_impl("cuda")
            except Exception as exc:
                bk_fwd = bk_bwd = None
                print(f"no BK-core implementation chosen for cuda: {exc}", flush=True)
            names = ["ssm_selective_scan_parallel", "ssm_mamba_cuda", "ssm_ssd_chunked", "ssm_fla_ssd", "ssm_fla_gla"]
            for n in (1024, 4096, 16384):
                for mode in ("fwd", "fwd+bwd"):
                    bk_case = Case(B=B, N=n, d=d, dtype="fp32", device="cuda", mode=mode)
                    bk_impl = bk_fwd if mode == "fwd" else bk_bwd
                    if bk_impl and time.perf_counter() < deadline:
                        _measure(f"bk:{bk_impl}", lambda c=bk_case, i=bk_impl: _BKPrepared(c, i), bk_case, rows)
                    for name in names + (["ssm_selective_scan_ref"] if n == 1024 and mode == "fwd" else []):
                        case = Case(B=B, N=n, d=d, dtype="bf16", device="cuda", mode=mode)
                        if go(name, case):
                            _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
                    save()
            for name in ("ssm_selective_scan_parallel", "ssm_ssd_chunked", "ssm_fla_ssd"):
                case = Case(B=B, N=4096, d=d, dtype="fp32", device="cuda")
                if go(name, case):
                    _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
        elif group == "attention":
            names = ["attention_sdpa_cudnn", "attention_sdpa_flash", "attention_sdpa_efficient",
                     "attention_sdpa_math", "attention_naive"]
            for n in (1024, 4096, 16384):
                for mode in ("fwd", "fwd+bwd"):
                    for name in names:
                        case = Case(B=B, N=n, d=d, dtype="bf16", device="cuda", mode=mode)
                        if go(name, case):
                            _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
                    save()
            for name in ("attention_sdpa_efficient", "attention_sdpa_math", "attention_naive"):
                case = Case(B=B, N=4096, d=d, dtype="fp32", device="cuda")
                if go(name, case):
                    _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
        elif group == "flex":
            for n, mode in ((4096, "fwd"), (4096, "fwd+bwd"), (16384, "fwd")):
                case = Case(B=B, N=n, d=d, dtype="bf16", device="cuda", mode=mode)
                if go("attention_flex_random", case):
                    _measure("attention_flex_random", lambda c=case: prepare("attention_flex_random", c), case, rows)
            for s in (0.5, 0.75, 0.9, 0.97):
                for name in ("attention_flex_local", "attention_flex_random"):
                    case = Case(B=B, N=16384, d=d, dtype="bf16", device="cuda", sparsity=s)
                    if go(name, case):
                        _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
                save()
        elif group == "layers":
            for n in (1024, 4096):
                for mode in ("fwd", "fwd+bwd"):
                    for layer in ("bk", "mamba2", "attention", "gated_deltanet"):
                        case = Case(B=B, N=n, d=d, dtype="bf16", device="cuda", mode=mode)
                        if time.perf_counter() < deadline:
                            _measure(f"layer_{layer}", lambda c=case, m=layer: prepare_layer(m, c), case, rows)
                    save()
    finally:
        save()


def run_timing(work: Path, verdict: dict[str, str], deadline: float, out: Path | None = None) -> list[dict[str, Any]]:
    (work / "verdict.json").write_text(json.dumps(verdict))
    rows: list[dict[str, Any]] = []
    share = {"ssm": 0.3, "attention": 0.25, "flex": 0.25, "layers": 0.2}
    for group in GROUPS:
        left = deadline - time.perf_counter()
        if left < 15:
            print(f"timing group {group}: not run, time budget spent", flush=True)
            continue
        # each group gets its share of what is left for it and the groups after it
        later = sum(share[g] for g in GROUPS[GROUPS.index(group):])
        budget = left * share[group] / later
        print(f"\n== timing group {group} ({budget:.0f} s) ==", flush=True)
        cmd = [sys.executable, __file__, "time-group", "--group", group, "--out", str(work),
               "--budget", f"{budget:.0f}"]
        try:
            p = subprocess.run(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"), timeout=budget + 60)
            if p.returncode:
                print(f"timing group {group} exited with {p.returncode}", flush=True)
        except subprocess.TimeoutExpired:
            print(f"timing group {group} timed out", flush=True)
        path = work / f"timing_{group}.json"
        if path.exists():
            rows += json.loads(path.read_text())
        if out is not None:  # keep what was measured even if a later group is cut off
            (out / "timing.json").write_text(json.dumps(rows, indent=1, default=str))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("all", "check-one", "time-group"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=270.0, help="seconds for the whole command")
    ap.add_argument("--check-share", type=float, default=0.45, help="fraction of the budget for the checks")
    ap.add_argument("--impl")
    ap.add_argument("--dtype", choices=tuple(DTYPES))
    ap.add_argument("--group", choices=GROUPS)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: dry-run the checks only")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.command == "check-one":
        check_one(args.impl, args.dtype, out, args.device)
        return
    if args.command == "time-group":
        verdict = json.loads((out / "verdict.json").read_text())
        time_group(args.group, verdict, out, t0 + args.budget)
        return
    from bkbench.harness.env import environment
    from bkbench.registry import default_registry

    env = environment(measure_bandwidth=False)
    (out / "env.json").write_text(json.dumps(env, indent=1, default=str))
    print(json.dumps({k: env.get(k) for k in ("gpu", "driver", "cuda", "torch", "triton")}, default=str))
    reg = default_registry()
    for f in reg.failures:
        print(f"IMPORT FAILURE {f.module}: {f.error}")
    for rec in reg.implementations(None):
        if rec.kind != "bk":
            print(f"{rec.name:30s} available: {rec.unavailable_reason() or 'yes'}")
    work = Path("/tmp/baselines_work")
    work.mkdir(parents=True, exist_ok=True)
    rows = run_checks(work, t0 + args.budget * args.check_share, args.device)
    (out / "check.json").write_text(json.dumps(rows, indent=1, default=str))
    verdict = verdicts(rows)
    print(f"checks done at {time.perf_counter() - t0:.0f}s: "
          + ", ".join(f"{k}={v}" for k, v in sorted(verdict.items())), flush=True)
    if args.device != "cuda":
        return
    timing = run_timing(work, verdict, t0 + args.budget, out)
    (out / "timing.json").write_text(json.dumps(timing, indent=1, default=str))
    print(f"done at {time.perf_counter() - t0:.0f}s: {len(timing)} timing rows", flush=True)


if __name__ == "__main__":
    main()
