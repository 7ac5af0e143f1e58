"""Device script: validate the measurement engine on a GPU (reports/measurement/).

Run from the repository root on a CUDA machine::

    PYTHONPATH=$PWD python3 bench/measurement_gpu.py --out OUTDIR [--parts timing,energy] [--energy-cases 4]

Parts:
``timing``  for each case, the harness's cold median (``bkbench.harness.timing``, L2 flushed before every call) next to
            ``triton.testing.do_bench(fn, return_mode="median")`` (same flush protocol), and the coefficient of
            variation of the harness's median over 5 independent repeats.
``energy``  ``bkbench.harness.energy.measure_energy`` (NVML energy-counter deltas, 5 s windows x 4 trials, idle power)
            and, per trial, the integral of the sampled instantaneous power over the same window.

Writes ``OUTDIR/validation.json`` (raw numbers, environment header) and ``OUTDIR/validation.md`` (the tables),
and prints the tables. Cases are built with ``bkbench.harness.workloads.prepare`` where they are BK-core or baseline
kernels, so they are exactly the callables the suite runner times.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bkbench.harness.energy import EnergyConfig, measure_energy  # noqa: E402
from bkbench.harness.env import environment  # noqa: E402
from bkbench.harness.suites import CaseSpec  # noqa: E402
from bkbench.harness.timing import TimingConfig, measure  # noqa: E402
from bkbench.registry import default_registry  # noqa: E402

Case = tuple[str, Callable[[], Any], float | None]  # name, fn, ideal bytes


def _spec(impl: str, kind: str = "bk", n: int = 4096, batch: int = 8, d: int = 512, dtype: str = "float32",
          mode: str = "fwd") -> CaseSpec:
    return CaseSpec(suite="validation", group="validation", impl=impl, kind=kind, n=n, batch=batch, d=d,
                    dtype=dtype, sparsity=0.0, mode=mode, options={}, timing="cold", device="cuda")


def _workload(impl: str, **kw: Any) -> Case | None:
    from bkbench.harness.workloads import Skip, prepare

    reg = default_registry()
    if impl not in reg:
        print(f"  {impl}: not registered, left out")
        return None
    spec = _spec(impl, kind=reg.get(impl).kind, **kw)
    try:
        wl = prepare(spec, reg)
    except Skip as exc:
        print(f"  {impl}: skipped ({exc})")
        return None
    wl.fn()
    torch.cuda.synchronize()
    chk = wl.check()
    if not chk.passed:
        print(f"  {impl}: incorrect ({chk.detail}), left out")
        return None
    return (f"{impl} {spec.case_key} {spec.mode}", wl.fn, wl.model.ideal_bytes)


def timing_cases() -> list[Case]:
    dev = "cuda"
    out: list[Case] = []
    x = torch.empty(64 << 20, dtype=torch.float32, device=dev).normal_()
    y = torch.empty_like(x)
    out.append(("torch copy_ 256 MiB fp32", lambda: y.copy_(x), 2.0 * x.numel() * 4))
    a = torch.randn(1 << 24, device=dev)
    k = torch.randn(1 << 24, device=dev)
    out.append(("torch.complex(a, k) 2^24 fp32", lambda: torch.complex(a, k), 16.0 * (1 << 24)))
    m1 = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    m2 = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    out.append(("bf16 matmul 4096^3", lambda: m1 @ m2, None))
    for impl, kw in (
        ("triton_fused", {}),
        ("lut_green_triton", {}),
        ("assoc_scan", {}),
        ("thomas", {"n": 1024}),
        ("attention_sdpa_flash", {"dtype": "bfloat16"}),
        ("ssm_ssd_chunked", {"dtype": "bfloat16", "n": 1024}),
    ):
        try:
            c = _workload(impl, **kw)
        except Exception as exc:
            print(f"  {impl}: failed to prepare: {type(exc).__name__}: {exc}")
            c = None
        if c is not None:
            out.append(c)
    return out


def validate_timing(cases: list[Case], repeats: int = 5) -> list[dict[str, Any]]:
    import triton.testing

    rows = []
    for name, fn, ideal in cases:
        t0 = time.perf_counter()
        cfg = TimingConfig(mode="cold", warmup_s=0.05, budget_s=0.6, rel_ci=0.01)
        est = measure(fn, TimingConfig(mode="cold", budget_s=0.05, min_reps=3), "cuda").median
        rep_ms = max(100.0, 30 * est * 1e3)
        # do_bench before and after the harness's repeats (clock/thermal drift shows as a before/after gap)
        db_before = triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median") * 1e-3
        runs = [measure(fn, cfg, "cuda") for _ in range(repeats)]
        db_after = triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median") * 1e-3
        medians = [r.median for r in runs]
        first = runs[0]
        db = 0.5 * (db_before + db_after)
        ours = statistics.median(medians)
        cv = statistics.pstdev(medians) / statistics.mean(medians)
        try:
            graph = measure(fn, TimingConfig(mode="graph", budget_s=0.3), "cuda").median
        except Exception as exc:  # not capturable
            graph = None
            print(f"  {name}: graph mode failed: {type(exc).__name__}: {exc}")
        row = {
            "case": name, "harness_median_s": ours, "harness_medians_s": medians, "do_bench_median_s": db,
            "do_bench_before_s": db_before, "do_bench_after_s": db_after,
            "diff_pct": 100.0 * (ours - db) / db, "repeat_cv_pct": 100.0 * cv, "n_samples": [r.stats.n for r in runs],
            "converged": [r.converged for r in runs], "p20_s": first.stats.p20, "p80_s": first.stats.p80,
            "host_s": statistics.median([r.host_s for r in runs if r.host_s is not None]),
            "host_bound": sum(r.host_bound for r in runs) >= (repeats + 1) // 2, "graph_median_s": graph,
            "gbps": (ideal / ours / 1e9) if ideal else None, "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(f"  {name:55s} harness {ours * 1e6:10.2f} us  do_bench {db * 1e6:10.2f} us  "
              f"diff {row['diff_pct']:+6.2f} %  CV {row['repeat_cv_pct']:5.2f} %  n={row['n_samples']}  host "
              f"{row['host_s'] * 1e6:.1f} us{' HOST-BOUND' if row['host_bound'] else ''}  graph "
              f"{(graph or math.nan) * 1e6:.1f} us", flush=True)
    return rows


def energy_cases(limit: int) -> list[Case]:
    dev = "cuda"
    out: list[Case] = []
    m1 = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    m2 = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    out.append(("bf16 matmul 8192^3", lambda: m1 @ m2, None))
    x = torch.empty(64 << 20, dtype=torch.float32, device=dev).normal_()
    y = torch.empty_like(x)
    out.append(("torch copy_ 256 MiB fp32", lambda: y.copy_(x), 2.0 * x.numel() * 4))
    more = (("triton_fused", {"batch": 32}), ("assoc_scan", {}), ("attention_sdpa_flash", {"dtype": "bfloat16"}))
    for impl, kw in more:
        if len(out) >= limit:
            break
        try:
            c = _workload(impl, **kw)
        except Exception as exc:
            print(f"  {impl}: failed to prepare: {type(exc).__name__}: {exc}")
            c = None
        if c is not None:
            out.append(c)
    return out[:limit]


def validate_energy(cases: list[Case], cfg: EnergyConfig) -> list[dict[str, Any]]:
    rows = []
    for name, fn, _ in cases:
        per = measure(fn, TimingConfig(mode="warm", budget_s=0.3), "cuda").median
        res = measure_energy(fn, device="cuda", per_call_s=per, elements=1, cfg=cfg)
        row: dict[str, Any] = {"case": name, "status": res.status, "per_call_s": per}
        if res.status == "ok":
            diffs = [t.counter_vs_integral for t in res.trials if t.counter_vs_integral is not None]
            row.update(
                j_per_call=res.j_per_call, dynamic_j_per_call=res.dynamic_j_per_call, power_avg_w=res.power_avg_w,
                power_idle_w=res.power_idle_w, spread_pct=100 * (res.spread or 0), power_source=res.power_source,
                capped_trials=res.power_capped_trials,
                counter_vs_integral_pct=[100 * d for d in diffs],
                worst_abs_pct=100 * max(abs(d) for d in diffs) if diffs else None,
                trials=[{"calls": t.calls, "seconds": t.seconds, "energy_j": t.energy_j, "integral_j": t.integral_j,
                         "power_w": t.power_w, **{k: t.telemetry.get(k) for k in (
                             "sm_clock_mhz_mean", "sm_clock_mhz_min", "temp_c_max", "power_limit_w", "throttle_reasons",
                             "power_capped")}} for t in res.trials],
            )
            print(f"  {name:45s} {res.power_avg_w:7.1f} W (idle {res.power_idle_w:6.1f} W)  "
                  f"{res.j_per_call * 1e3:10.4f} mJ/call  counter vs integral worst {row['worst_abs_pct']:.2f} %  "
                  f"capped trials {res.power_capped_trials}/{len(res.trials)}  source {res.power_source}", flush=True)
        else:
            print(f"  {name}: {res.status}")
        rows.append(row)
    return rows


OOB = '''
import torch
import triton
import triton.language as tl

from bkbench import register
from bkbench.kernels.bk.thomas import thomas as _thomas


@triton.jit
def _oob_store(out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs + (1 << 40), tl.zeros([BLOCK], dtype=tl.float32), mask=offs < n)


@register("planted_oob", kind="bk", devices=("cuda",), dtypes=(torch.float32,))
def planted_oob(a, k, z):
    out = torch.empty(a.numel(), device=a.device, dtype=torch.float32)
    _oob_store[(1,)](out, out.numel(), BLOCK=1024)
    torch.cuda.synchronize()
    return _thomas(a, k, z)
'''

SUITE = '''
name = "planted"
[settings]
budget_s = 0.05
timeout_s = 120
[[group]]
implementations = ["thomas", "planted_oob", "assoc_scan", "triton_fused"]
n = [1024]
batch = [8]
d = [64]
'''


def planted_crash(out: Path) -> list[dict[str, Any]]:
    """A suite with an implementation that stores far out of bounds: it must be recorded as a crash while the
    other cases (before and after it, in the same worker slot) complete."""
    import os
    import tempfile

    from bkbench.harness.runner import run_suite
    from bkbench.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bkbench-oob-"))
    (tmp / "planted_oob.py").write_text(OOB)
    (tmp / "planted.toml").write_text(SUITE)
    sys.path.insert(0, str(tmp))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tmp), str(ROOT), os.environ.get("PYTHONPATH", "")])
    db = out / "planted_crash.db"
    run_suite(str(tmp / "planted.toml"), device="cuda", db=db, plugins=["planted_oob"], progress=False)
    with Store(db) as store:
        rows = [{k: r[k] for k in ("impl", "status", "reason", "time_median_s", "wall_s")} for r in store.results()]
    for r in rows:
        print(f"  {r['impl']:15s} {r['status']:8s} {r['reason'] or ''}")
    return rows


def markdown(env: dict[str, Any], timing: list[dict[str, Any]], energy: list[dict[str, Any]],
             crash: list[dict[str, Any]] | None = None) -> str:
    keys = ("gpu", "driver", "cuda", "torch", "triton", "python", "git_sha", "host", "date", "copy_bandwidth_gbs",
            "sm_clock_max_mhz", "power_limit_w")
    lines = ["# Measurement-engine validation", "", "Environment:", ""]
    lines += [f"- {k}: {env.get(k)}" for k in keys]
    lines += ["", "Command: `PYTHONPATH=$PWD python3 bench/measurement_gpu.py --out $OUT`", ""]
    if timing:
        lines += ["## Harness median vs triton.testing.do_bench (cold: L2 flushed before every call)", "",
                  "| case | harness median (us) | do_bench median (us) | diff | repeat CV (5 runs) | samples/run "
                  "| host us/call | host-bound | graph-mode median (us) | GB/s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in timing:
            gb = f"{r['gbps']:.0f}" if r.get("gbps") else ""
            g = f"{r['graph_median_s'] * 1e6:.2f}" if r.get("graph_median_s") else "n/a"
            lines.append(f"| {r['case']} | {r['harness_median_s'] * 1e6:.2f} | {r['do_bench_median_s'] * 1e6:.2f} | "
                         f"{r['diff_pct']:+.2f} % | {r['repeat_cv_pct']:.2f} % | {min(r['n_samples'])}-"
                         f"{max(r['n_samples'])} | {r['host_s'] * 1e6:.1f} | {'yes' if r['host_bound'] else 'no'} | "
                         f"{g} | {gb} |")
        ok3 = sum(abs(r["diff_pct"]) <= 3 for r in timing)
        long = [r for r in timing if r["harness_median_s"] >= 50e-6]
        dev = [r for r in long if not r["host_bound"]]
        ok_cv = sum(r["repeat_cv_pct"] <= 2 for r in long)
        ok_cv_dev = sum(r["repeat_cv_pct"] <= 2 for r in dev)
        lines += ["", f"Within 3 % of do_bench: {ok3} of {len(timing)} cases. Repeat CV <= 2 % for kernels >= 50 us: "
                  f"{ok_cv} of {len(long)} ({ok_cv_dev} of {len(dev)} device-bound ones).",
                  "do_bench is run before and after the harness's 5 repeats; its column is the mean of the two.", ""]
    if energy:
        lines += ["## NVML energy counter vs the integral of sampled instantaneous power (5 s windows x 4 trials)", "",
                  "| case | avg power (W) | idle (W) | J/call | dynamic J/call | trial spread | counter vs integral "
                  "per trial | worst | capped trials | power source |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in energy:
            if r["status"] != "ok":
                lines.append(f"| {r['case']} | {r['status']} | | | | | | | | |")
                continue
            per = ", ".join(f"{x:+.2f} %" for x in r["counter_vs_integral_pct"])
            lines.append(f"| {r['case']} | {r['power_avg_w']:.1f} | {r['power_idle_w']:.1f} | {r['j_per_call']:.4g} | "
                         f"{r['dynamic_j_per_call']:.4g} | {r['spread_pct']:.2f} % | {per} | "
                         f"{r['worst_abs_pct']:.2f} % | {r['capped_trials']}/{len(r['trials'])} | "
                         f"{r['power_source']} |")
        ok = sum(r.get("worst_abs_pct") is not None and r["worst_abs_pct"] <= 5 for r in energy)
        lines += ["", f"Counter within 5 % of the power integral in every trial: {ok} of {len(energy)} cases.", ""]
    if crash:
        lines += ["## Planted out-of-bounds Triton store in a suite (one worker)", "", "| impl | status | reason |",
                  "|---|---|---|"]
        lines += [f"| {r['impl']} | {r['status']} | {(r['reason'] or '').replace('|', '/')} |" for r in crash]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="timing,energy,crash")
    ap.add_argument("--energy-cases", type=int, default=4)
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=4)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    env = environment(measure_bandwidth=True)
    result: dict[str, Any] = {"environment": env, "timing": [], "energy": []}

    def save() -> None:
        (out / "validation.json").write_text(json.dumps(result, indent=1, default=str))
        (out / "validation.md").write_text(markdown(env, result["timing"], result["energy"], result.get("crash")))

    print(f"GPU {env.get('gpu')} driver {env.get('driver')} copy bandwidth {env.get('copy_bandwidth_gbs'):.0f} GB/s")
    if "timing" in parts:
        print("== timing: harness vs do_bench, repeat CV")
        try:
            result["timing"] = validate_timing(timing_cases())
        except Exception:
            traceback.print_exc()
        save()
    if "energy" in parts:
        print("== energy: counter vs power integral")
        try:
            cfg = EnergyConfig(window_s=args.window, trials=args.trials)
            result["energy"] = validate_energy(energy_cases(args.energy_cases), cfg)
        except Exception:
            traceback.print_exc()
        save()
    if "crash" in parts:
        print("== planted out-of-bounds Triton store (illegal memory access) in a suite")
        try:
            result["crash"] = planted_crash(out)
        except Exception:
            traceback.print_exc()
        save()
    print(markdown(env, result["timing"], result["energy"], result.get("crash")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
