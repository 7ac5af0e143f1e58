"""Device script for the baselines: the correctness battery on CUDA, then a first small timing table.

Run on a GPU machine from the repository root (fla-core installed or on PYTHONPATH)::

    PYTHONPATH=$PWD python3 bench/baselines_gpu.py --out OUTDIR [--budget 240] [--skip-check]

Writes, under OUTDIR: ``check.json`` (every baseline's battery on CUDA as GateResult rows), ``timing.json``
(one row per (baseline, case): median time from triton.testing.do_bench with its L2 flush, the measured
peak memory and the analytic model), ``env.json`` (provenance) and prints both tables. Timing stops
once ``--budget`` seconds have passed (what was measured so far is kept); every baseline is timed only
after it passed the battery. This is the first look; the full N = 2^8..2^16 sweep with energy is the
suite runner's job.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bkbench.baselines import Case, Declined, check, prepare, prepare_layer
from bkbench.baselines.models import bk_core_model
from bkbench.registry import default_registry


def _bench(fn: Any) -> tuple[float, float, float]:
    """(median, p20, p80) seconds of fn() with triton's do_bench (L2 flushed before every call)."""
    from triton.testing import do_bench

    q = do_bench(fn, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])
    return q[0] * 1e-3, q[1] * 1e-3, q[2] * 1e-3


def _measure(name: str, make: Any, case: Case, rows: list[dict[str, Any]]) -> None:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    row: dict[str, Any] = {"impl": name, "case": case.key, "B": case.B, "N": case.N, "d": case.d,
                           "dtype": str(case.dtype).replace("torch.", ""), "mode": case.mode,
                           "sparsity": case.sparsity}
    t0 = time.perf_counter()
    try:
        prep = make()
        prep.fn()  # compile / autotune / first-touch
        torch.cuda.synchronize()
        row["peak_bytes"] = torch.cuda.max_memory_allocated() - base
        med, p20, p80 = _bench(prep.fn)
        row.update(status="ok", median_s=med, p20_s=p20, p80_s=p80, model=prep.model.as_dict(),
                   info={k: v for k, v in prep.info.items() if k != "options"})
        flops = prep.model.flops_for(case.mode)
        row["tflops"] = flops / med / 1e12
        row["gbs_min"] = prep.model.bytes_min / med / 1e9 if case.mode == "fwd" else None
    except Declined as why:
        row.update(status="skip", reason=str(why))
    except torch.OutOfMemoryError as exc:
        row.update(status="oom", reason=str(exc).split("\n")[0][:200])
    except Exception as exc:
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:400], tb=traceback.format_exc()[-1500:])
    row["wall_s"] = time.perf_counter() - t0
    prep = None
    torch.cuda.empty_cache()
    rows.append(row)
    t = row.get("median_s")
    shown = f"{t * 1e3:9.3f} ms" if t else f"{row['status']:>12}"
    mem = row.get("peak_bytes")
    print(f"  {name:30s} {case.key:44s} {shown} "
          f"{'' if mem is None else f'{mem / 2**20:9.1f} MiB'} {row.get('reason', '')[:120]}", flush=True)


class _BKPrepared:
    """BK-core at equal work (B·d chains of length N) through bkbench.bk_core, for context in the table."""

    def __init__(self, case: Case, impl: str) -> None:
        from bkbench.api import bk_core

        chains = case.B * case.d
        gen = torch.Generator(device="cuda").manual_seed(case.seed)
        self.a = (-2.0 + 0.5 * torch.randn(chains, case.N, generator=gen, device="cuda"))
        self.k = torch.ones(chains, max(case.N - 1, 0), device="cuda")
        self.model = bk_core_model(chains, case.N)
        self.info = {"impl": impl}
        if case.mode == "fwd+bwd":
            self.a.requires_grad_(True)
            gout = torch.randn(chains, case.N, dtype=torch.complex64, device="cuda")

            def fn() -> Any:
                self.a.grad = None
                g = bk_core(self.a, self.k, 1.0, 1j, impl=impl, check_finite=False)
                g.backward(gout)
                return g
        else:

            def fn() -> Any:
                with torch.no_grad():
                    return bk_core(self.a, self.k, 1.0, 1j, impl=impl, check_finite=False)

        self.fn = fn


def run_checks(out: Path) -> dict[str, str]:
    reg = default_registry()
    verdict: dict[str, str] = {}
    rows = []
    for rec in reg.implementations(None):
        if rec.kind == "bk":
            continue
        t0 = time.perf_counter()
        res = check(rec, "cuda", seeds=(0, 1), registry=reg)
        rows += [asdict(r) for r in res]
        n_fail = sum(r.status == "fail" for r in res)
        n_pass = sum(r.status == "pass" for r in res)
        worst = max([r.error for r in res if r.error is not None and math.isfinite(r.error)] or [float("nan")])
        skips = sorted({r.detail for r in res if r.status == "skip"})
        verdict[rec.name] = "fail" if n_fail else ("pass" if n_pass else "skip")
        print(f"check {rec.name:30s} pass {n_pass:3d} fail {n_fail:3d} worst {worst:.1e} "
              f"({time.perf_counter() - t0:.0f}s) {'; '.join(skips)[:150]}", flush=True)
        for r in res:
            if r.status == "fail":
                print(f"   FAIL {r.case} [{r.key}] {r.check}: {r.detail[:300]}", flush=True)
        by_dtype: dict[str, float] = {}
        for r in res:
            if r.error is not None and r.status != "skip":
                key = f"{r.check}:{r.key.split('_')[3]}"
                by_dtype[key] = max(by_dtype.get(key, 0.0), r.error)
        print("      worst by check/dtype: " + ", ".join(f"{k} {v:.1e}" for k, v in sorted(by_dtype.items())))
    (out / "check.json").write_text(json.dumps(rows, indent=1, default=str))
    return verdict


def run_timing(out: Path, verdict: dict[str, str], budget: float, t_start: float) -> None:
    rows: list[dict[str, Any]] = []

    def save() -> None:
        (out / "timing.json").write_text(json.dumps(rows, indent=1, default=str))

    def ok(name: str) -> bool:
        """Time only what passed the battery; a failed one gets a row saying so (a skip gets its reason)."""
        if verdict.get(name) != "fail":
            return True
        rows.append({"impl": name, "status": "failed-check", "reason": "failed the CUDA battery: not timed"})
        return False

    def left() -> bool:
        return time.perf_counter() - t_start < budget

    from bkbench.dispatch import choose

    reg = default_registry()
    try:
        bk_impl = choose("cuda", torch.float32, 4096, 4096, reg).impl
    except Exception as exc:
        bk_impl = None
        print(f"no BK-core implementation for cuda: {exc}")
    d, B = 1024, 4
    core = ["ssm_selective_scan_parallel", "ssm_mamba_cuda", "ssm_ssd_chunked", "ssm_fla_ssd", "ssm_fla_gla",
            "attention_naive", "attention_sdpa_flash", "attention_sdpa_cudnn", "attention_sdpa_efficient",
            "attention_sdpa_math", "attention_flex_random"]
    print(f"\n== core level, d={d}, B={B}, bf16 (BK-core: {bk_impl}, fp32 work) ==", flush=True)
    for n in (1024, 4096, 16384):
        for mode in ("fwd", "fwd+bwd"):
            case = Case(B=B, N=n, d=d, dtype="bf16", device="cuda", mode=mode)
            if bk_impl and left():
                bk_case = case.with_(dtype="fp32")
                _measure(f"bk:{bk_impl}", lambda c=bk_case: _BKPrepared(c, bk_impl), bk_case, rows)
            for name in core + (["ssm_selective_scan_ref"] if n == 1024 and mode == "fwd" else []):
                if not left():
                    break
                if name == "attention_flex_random" and mode == "fwd+bwd" and n > 4096:
                    continue  # one backward compile per shape is enough for the first look
                if ok(name):
                    _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
            save()
    print("\n== fp32, N=4096, fwd ==", flush=True)
    for name in core:
        if left() and ok(name):
            case = Case(B=B, N=4096, d=d, dtype="fp32", device="cuda")
            _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
    save()
    print("\n== FlexAttention sparsity, N=16384, d=1024, B=4, bf16 fwd ==", flush=True)
    for s in (0.5, 0.75, 0.9):
        for name in ("attention_flex_local", "attention_flex_random"):
            if left() and ok(name):
                case = Case(B=B, N=16384, d=d, dtype="bf16", device="cuda", sparsity=s)
                _measure(name, lambda c=case, m=name: prepare(m, c), case, rows)
    save()
    print("\n== layer level, d=1024, B=4, bf16 ==", flush=True)
    for n in (1024, 4096):
        for mode in ("fwd", "fwd+bwd"):
            for layer in ("bk", "mamba2", "attention"):
                if left():
                    case = Case(B=B, N=n, d=d, dtype="bf16", device="cuda", mode=mode)
                    _measure(f"layer_{layer}", lambda c=case, m=layer: prepare_layer(m, c), case, rows)
    save()
    print(f"timing done: {len(rows)} rows, {time.perf_counter() - t_start:.0f}s since start", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=240.0, help="stop starting new timings after this (s)")
    ap.add_argument("--skip-check", action="store_true")
    args = ap.parse_args()
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from bkbench.env import environment

    env = environment(measure_bandwidth=False)
    (out / "env.json").write_text(json.dumps(env, indent=1, default=str))
    print(json.dumps({k: env.get(k) for k in ("gpu", "gpu_name", "driver", "cuda", "torch", "triton")}, default=str))
    reg = default_registry()
    for f in reg.failures:
        print(f"IMPORT FAILURE {f.module}: {f.error}")
    for rec in reg.implementations(None):
        if rec.kind != "bk":
            print(f"{rec.name:30s} available: {rec.unavailable_reason() or 'yes'}")
    verdict = {} if args.skip_check else run_checks(out)
    print(f"checks done at {time.perf_counter() - t_start:.0f}s", flush=True)
    run_timing(out, verdict, args.budget, t_start)


if __name__ == "__main__":
    main()
