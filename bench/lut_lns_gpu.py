"""Device script for issue 4: time and error of lut_green (window m) and lns (both Gaussian-log variants),
PyTorch and Triton, next to the exact kernels, at B * N = 2^24; the CUDA gate of the four implementations;
accuracy–speed Pareto plots.

Run from the repository root on a GPU machine::

    PYTHONPATH=$PWD python3 bench/lut_lns_gpu.py --out OUTDIR [--budget 270] [--no-gate]

or on the CPU with tiny shapes (the Triton kernels under TRITON_INTERPRET=1) to check the script itself::

    PYTHONPATH=. python bench/lut_lns_gpu.py --smoke --out /tmp/lutlns

and re-draw the plots from a results file::

    PYTHONPATH=. python bench/lut_lns_gpu.py --plot OUTDIR/results.json --out reports/lut_lns

Writes under OUTDIR: env.json (provenance header, measured copy bandwidth), gate.json (CUDA gate of
lut_green, lut_green_triton, lns, lns_triton), results.json (one row per (shape, method): median / p20 / p80
seconds from bkbench.harness.timing in "cold" mode — L2 flushed before every call, CUDA events — all raw samples,
relative error max|G - G_ref| / max|G_ref| against the float64 pivot reference, % of the copy-bandwidth
roofline for the compulsory bytes), pareto_<shape>.png. Methods are called through their registry function
with the calling-convention inputs (bk_core's validation and finite-check are not timed; the methods' own
host work — table lookup, range checks — is). Each row is written as soon as it is measured; rows stop
being started when --budget seconds have passed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

# Triton decides between compiling and interpreting when it is imported (bkbench.harness.env imports it): without a
# GPU, turn the CPU interpreter on before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WINDOWS = (0, 1, 2, 4, 8, 16, 32)
GATE_SECONDS = 75.0  # time kept for the CUDA gate at the end of the budget


def shapes(smoke: bool) -> list[dict[str, Any]]:
    """The measured problems. Full: B4096 x N4096 (2^24), B64 x N262144 (2^24, strong potential)."""
    from bkbench.harness.problems import Problem

    if smoke:
        return [
            {"name": "S1", "problem": Problem(batch=(4,), n=64, coupling="scalar"), "full": True},
            {"name": "S1k", "problem": Problem(batch=(4,), n=64, coupling="random"), "full": False},
            {"name": "S2", "problem": Problem(batch=(2,), n=300, coupling="scalar", potential=4.0), "full": False},
        ]
    return [
        {"name": "S1", "problem": Problem(batch=(4096,), n=4096, coupling="scalar"), "full": True},
        {"name": "S1k", "problem": Problem(batch=(4096,), n=4096, coupling="random"), "full": False},
        {"name": "S1f64", "problem": Problem(batch=(4096,), n=4096, coupling="scalar", dtype="float64"),
         "full": False, "f64": True},
        {"name": "S2", "problem": Problem(batch=(64,), n=262144, coupling="scalar", potential=4.0), "full": False},
    ]


def methods(shape: dict[str, Any], smoke: bool) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(family, label, impl, options) for one shape, cheapest first."""
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    if shape.get("f64"):
        return [
            ("lut_green_triton", "lut m=8", "lut_green_triton", {"window": 8}),
            ("lut_green_triton", "lut m=16", "lut_green_triton", {"window": 16}),
            ("lns_triton", "lns computed", "lns_triton", {"gauss": "computed"}),
        ]
    out.append(("exact", "triton_fused", "triton_fused", {}))
    if shape["full"]:
        out += [("lut_green_triton", f"lut m={m}", "lut_green_triton", {"window": m}) for m in WINDOWS]
        out += [("lns_triton", f"lns {g}", "lns_triton", {"gauss": g}) for g in ("computed", "table")]
        # breakdowns (not plotted): the lut kernel alone (closure plan prepared), each lns_triton stage alone
        out += [("breakdown", f"lut m={m} [kernel only]", "lut_green_triton:kernel", {"window": m})
                for m in WINDOWS]
        out += [("breakdown", f"lns {g} [{st}]", f"lns_triton:{st}", {"gauss": g})
                for g in ("computed", "table") for st in ("transfer", "carry", "solve")]
        out += [("lut_green (torch)", f"torch lut m={m}", "lut_green", {"window": m}) for m in (0, 8, 32)]
        out += [("exact", "thomas", "thomas", {})]
        out += [("lns (torch)", f"torch lns {g}", "lns", {"gauss": g}) for g in ("computed", "table")]
    elif shape["name"] == "S1k":
        out += [("lut_green_triton", f"lut m={m} (k per site)", "lut_green_triton", {"window": m}) for m in (8, 16)]
        out += [("lns_triton", "lns computed (k per site)", "lns_triton", {"gauss": "computed"})]
    else:
        out += [("lut_green_triton", f"lut m={m}", "lut_green_triton", {"window": m}) for m in (0, 8, 16, 32)]
        out += [("lns_triton", f"lns {g}", "lns_triton", {"gauss": g}) for g in ("computed", "table")]
        out += [("lns (torch)", "torch lns computed", "lns", {"gauss": "computed"})]
    return out


def breakdown_callable(impl: str, norm: Any, kwargs: dict[str, Any]):
    """(timed callable, callable returning G for the error check) for "lut_green_triton:kernel" (the launch
    alone, its closure plan prepared once) and "lns_triton:<stage>" (one of the three launches alone, the
    error checked on the full result); (None, None) for a plain registry name."""
    if ":" not in impl:
        return None, None
    name, part = impl.split(":", 1)
    if name == "lut_green_triton" and part == "kernel":
        from bkbench.kernels.bk.lut_green_triton import prepare

        launch = prepare(norm.a, norm.k, norm.z, **kwargs)
        return launch, launch
    if name == "lns_triton":
        from bkbench.kernels.bk.lns_triton import prepare

        stages = prepare(norm.a, norm.k, norm.z, **kwargs)
        return stages[part], stages["all"]
    raise ValueError(f"impl: unknown breakdown {impl!r}")


def ideal_bytes(p: Any, per_site_k: bool) -> int:
    """Compulsory bytes: a (read), k (read, unless uniform), G (complex, written)."""
    real = 8 if p.dtype == "float64" else 4
    return p.elements * (real + 2 * real) + (p.chains * (p.n - 1) * real if per_site_k else 0)


def timer(device: str):
    """bkbench.harness.timing (cold mode) when present, else triton.testing.do_bench (median, L2 flushed)."""
    try:
        from bkbench.harness.timing import TimingConfig, measure

        cfg = TimingConfig(mode="cold" if device == "cuda" else "cpu", warmup_s=0.05, budget_s=0.5,
                           rel_ci=0.02, min_reps=5, min_reps_long=2)

        def run(fn):
            t = measure(fn, cfg, device)
            s = t.stats
            return {"median_s": s.median, "p20_s": s.p20, "p80_s": s.p80, "n": s.n, "stop": t.stop,
                    "engine": f"bkbench.harness.timing/{t.mode}", "samples_s": t.samples}

        return run
    except Exception:  # pragma: no cover - only without the timing module
        import triton.testing

        def run(fn):
            q = triton.testing.do_bench(fn, warmup=25, rep=100, quantiles=[0.2, 0.5, 0.8])
            return {"median_s": q[1] * 1e-3, "p20_s": q[0] * 1e-3, "p80_s": q[2] * 1e-3,
                    "engine": "triton.testing.do_bench (median, L2 flushed)"}

        return run


def run_gate(out: Path, device: str, log) -> None:
    from bkbench.harness.gate import run_gate as gate

    t0 = time.perf_counter()
    rep = gate(impls=["lut_green", "lut_green_triton", "lns", "lns_triton"], device=device, quick=True, seeds=(0,))
    rows = [{"impl": r.impl, "case": r.case, "key": r.key, "check": r.check, "status": r.status, "error": r.error,
             "tolerance": r.tolerance, "detail": r.detail, "seconds": round(r.seconds, 3)} for r in rep.results]
    summary = {"passed": rep.passed, "device": device, "seconds": round(time.perf_counter() - t0, 1),
               "import_failures": rep.import_failures,
               "counts": {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "skip")},
               "failures": [r for r in rows if r["status"] == "fail"], "results": rows}
    (out / "gate.json").write_text(json.dumps(summary, indent=1, default=str))
    log(f"gate: passed={rep.passed} counts={summary['counts']} in {summary['seconds']} s")
    for f in summary["failures"]:
        log(f"  FAIL {f['impl']} :: {f['case']} [{f['key']}]: {f['detail']}")


def measure_all(out: Path, device: str, smoke: bool, deadline: float, log) -> list[dict[str, Any]]:
    from bkbench.harness.accuracy import relative_error
    from bkbench.harness.problems import make_inputs
    from bkbench.harness.reference import reference
    from bkbench.registry import default_registry
    from bkbench.validate import normalize

    reg = default_registry()
    time_it = timer(device)
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
    bw = env.get("copy_bandwidth_gbs")
    rows: list[dict[str, Any]] = []
    for shape in shapes(smoke):
        p = shape["problem"].with_(device=device)
        t0 = time.perf_counter()
        ref = reference(make_inputs(p, device="cpu"))
        log(f"[{shape['name']}] {p.key}: float64 reference in {time.perf_counter() - t0:.1f} s")
        inp = make_inputs(p)
        norm = normalize(inp.a, inp.b, inp.c, inp.z)
        per_site_k = p.coupling != "scalar"
        for family, label, impl, opts in methods(shape, smoke):
            if time.perf_counter() > deadline:
                log(f"  budget reached: {label} not started")
                break
            row: dict[str, Any] = {"shape": shape["name"], "key": p.key, "B": p.chains, "N": p.n, "dtype": p.dtype,
                                   "family": family, "label": label, "impl": impl, "options": opts}
            try:
                rec = reg.get(impl.split(":")[0])
                reason = rec.decline_reason(p)
                if reason:
                    raise RuntimeError(f"declined: {reason}")
                kwargs = {**rec.defaults, **opts}
                fn, check = breakdown_callable(impl, norm, kwargs)
                if fn is None:

                    def fn(rec=rec, kwargs=kwargs, norm=norm):
                        return rec.fn(norm.a, norm.k, norm.z, **kwargs)

                    check = fn
                t1 = time.perf_counter()
                g = check()
                if device == "cuda":
                    torch.cuda.synchronize()
                row["first_call_s"] = time.perf_counter() - t1
                err = relative_error(g, ref)
                row["error"] = err.rel_err
                row["error_worst_chain"] = err.rel_err_chain
                row["finite"] = err.finite
                tol = rec.tolerance(p, opts)
                row["declared_tolerance"] = tol
                del g
                row.update(time_it(fn))
                row["ideal_bytes"] = ideal_bytes(p, per_site_k)
                row["gbs"] = row["ideal_bytes"] / row["median_s"] / 1e9
                if bw:
                    row["roofline_pct"] = 100.0 * row["gbs"] / bw
                log(f"  {label:28s} {row['median_s'] * 1e6:12.1f} us  err {row['error']:.2e}"
                    f"  {row.get('roofline_pct', float('nan')):6.2f} % roofline")
            except Exception as exc:
                row["failure"] = f"{type(exc).__name__}: {exc}"
                row["traceback"] = traceback.format_exc()[-3000:]
                log(f"  {label:28s} FAILED {row['failure'][:300]}")
            rows.append(row)
            (out / "results.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1,
                                                         default=str))
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def plots(rows: list[dict[str, Any]], out: Path, env: dict[str, Any], log) -> None:
    try:
        from bkbench.harness.plots_pareto import plot_pareto
    except Exception as exc:
        log(f"no plots: {exc}")
        return
    gpu = env.get("gpu_name") or env.get("gpu") or env.get("device_name") or "?"
    for name in sorted({r["shape"] for r in rows}):
        sel = [dict(r, time_s=r.get("median_s")) for r in rows if r["shape"] == name and r["family"] != "breakdown"]
        if not sel:
            continue
        key = sel[0]["key"]
        try:
            title = f"{key} on {gpu}: error vs time (lut window m, lns)"
            path = plot_pareto(sel, out / f"pareto_{name}.png", title=title)
            log(f"plot: {path}")
        except Exception as exc:
            log(f"plot {name} failed: {exc}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--budget", type=float, default=270.0, help="seconds after which no new row is started")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (Triton interpreter)")
    ap.add_argument("--no-gate", action="store_true")
    ap.add_argument("--plot", type=Path, help="only re-draw the plots from this results.json")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    if args.plot:
        data = json.loads(args.plot.read_text())
        plots(data["rows"], out, data.get("environment", {}), log)
        return 0
    start = time.perf_counter()
    deadline = start + args.budget
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    from bkbench.harness.env import environment

    env = environment(measure_bandwidth=device == "cuda")
    if env.get("git_sha") in (None, "", "unknown") and os.environ.get("BKBENCH_GIT_SHA"):
        env["git_sha"] = os.environ["BKBENCH_GIT_SHA"] + " (passed in; the device copy has no .git)"
    env["command"] = " ".join(sys.argv)
    (out / "env.json").write_text(json.dumps(env, indent=1, default=str))
    log(json.dumps({k: env.get(k) for k in ("gpu_name", "gpu", "driver", "cuda", "torch", "triton", "git_sha",
                                            "copy_bandwidth_gbs", "date") if k in env}))
    # measurements first (the deliverable), then plots, then the CUDA gate if GATE_SECONDS are left
    rows = measure_all(out, device, args.smoke, deadline - GATE_SECONDS, log)
    plots(rows, out, env, log)
    (out / "log.txt").write_text("\n".join(lines) + "\n")
    if not args.no_gate and not args.smoke:
        if time.perf_counter() > deadline - 0.5 * GATE_SECONDS:
            log("gate: not run (budget)")
        else:
            try:
                run_gate(out, device, log)
            except Exception as exc:
                log(f"gate crashed: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
    log(f"total {time.perf_counter() - start:.0f} s")
    (out / "log.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
