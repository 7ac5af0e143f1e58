"""User call vs bare kernel on the GPU, in one device call (issue 22: the README rows and the Done-when table).

Run from the repository root on a CUDA machine::

    OUT=/some/dir python3 bench/usercall_gpu.py [--impl triton_fused] [--budget 1.0]

For each shape (float32, z = 1j; per-position couplings as two separate tensors b, c, and a scalar coupling) it
runs the suite runner's own path (``bkbench.worker.run_case``: prepare, first call, the correctness check of
the user call and of the bare kernel, peak memory, timing in mode ``cold`` — L2 flushed before every call,
CUDA events, as ``triton.testing.do_bench`` — and the bare kernel's ``kernel_*`` metrics). Headline: the user
call ``bkbench.bk_core(a, b, c, z, impl=...)`` counted with its own ideal bytes (a, b, c read, G written:
20 B per element, 12 B with a scalar coupling); second: the bare kernel on prepared inputs (a, k read, G written:
16 B per element). It also measures the eager host cost: 1000 back-to-back forward calls at B = 8, N = 4096, one
synchronisation at the end, wall time per call.

Writes ``$OUT/usercall.db`` (a results database: ``bkbench report --db $OUT/usercall.db --out DIR`` shows the
"User call (bk_core) vs bare kernel" table), ``$OUT/usercall.json`` (environment header + rows + host cost) and
``$OUT/usercall.md`` (the table: both times, both % of copy bandwidth, and call % / kernel % against the
issue's 95 % (B·N >= 2^24) and 90 % (2^22) targets).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FWD_SHAPES = [(1024, 4096), (4096, 1024), (16384, 1024), (4096, 4096), (1024, 16384), (256, 65536), (16384, 4096),
              (65536, 4096), (8, 65536)]  # (B, N): 2^22, 2^24 (the README's four), 2^26, 2^28, 8 x 65536
BWD_SHAPES = [(4096, 4096), (256, 65536)]
COUPLINGS = ("laplacian", "scalar")  # separate b, c tensors; b = c = 1.0 numbers
HOST_SHAPE, HOST_CALLS = (8, 4096), 1000


def _spec(impl: str, b: int, n: int, coupling: str, mode: str, budget: float):
    from bkbench.suites import CaseSpec

    problem = {"coupling": coupling} if coupling != "laplacian" else {}
    return CaseSpec(suite="usercall", group=f"usercall-{coupling}", impl=impl, kind="bk", n=n, batch=b, d=1,
                    dtype="float32", sparsity=0.0, mode=mode, options={}, timing="cold", device="cuda",
                    problem=problem, budget_s=budget, warmup_s=0.1, min_reps=10, rel_ci=0.005)


def _host_cost(impl: str) -> dict[str, float]:
    """Wall seconds per eager forward call, HOST_CALLS back-to-back calls and one synchronisation."""
    import torch

    from bkbench.registry import default_registry
    from bkbench.workloads import prepare

    wl = prepare(_spec(impl, *HOST_SHAPE, "laplacian", "fwd", 1.0), default_registry())
    out = {}
    for name, fn in (("call", wl.fn), ("kernel", wl.kernel.fn)):
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(HOST_CALLS):
            fn()
        torch.cuda.synchronize()
        out[f"{name}_s_per_call"] = (time.perf_counter() - t0) / HOST_CALLS
    return out


def _pct(row: dict, key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def _table(rows: list[dict]) -> list[str]:
    lines = ["| B x N | B·N | coupling | mode | user call (bk_core) | % of copy | bare kernel | % of copy | "
             "call % / kernel % | target |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['batch']} x {r['n']} | | {r['coupling']} | {r['mode']} | {r['status']}: "
                         f"{str(r.get('reason'))[:80]} | | | | | |")
            continue
        call, kern = _pct(r, "roofline_pct"), _pct(r, "kernel_roofline_pct")
        frac = call / kern if call and kern else None
        el = r["batch"] * r["n"]
        target = 0.95 if el >= 1 << 24 else 0.90 if el >= 1 << 22 else None
        verdict = "" if target is None or r["mode"] != "fwd" or frac is None else (
            f"{'meets' if frac >= target else 'MISSES'} {100 * target:.0f} %")
        kt = r.get("kernel_time_median_s")
        lines.append(f"| {r['batch']} x {r['n']} | 2^{el.bit_length() - 1} | {r['coupling']} | {r['mode']} | "
                     f"{1e6 * r['time_median_s']:.1f} µs | {f'{call:.1f}' if call else '—'} | "
                     f"{f'{1e6 * kt:.1f} µs' if kt else '—'} | {f'{kern:.1f}' if kern else '—'} | "
                     f"{f'{100 * frac:.1f} %' if frac else '—'} | {verdict} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", default="triton_fused")
    parser.add_argument("--budget", type=float, default=1.0, help="timing budget per callable (seconds)")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", "results/usercall"))
    out.mkdir(parents=True, exist_ok=True)
    import torch

    if not torch.cuda.is_available():
        print("usercall_gpu: needs a CUDA device", file=sys.stderr)
        return 2
    from bkbench.env import environment
    from bkbench.registry import default_registry
    from bkbench.store import Store
    from bkbench.worker import run_case

    env = environment(measure_bandwidth=True)
    bw = env.get("copy_bandwidth_gbs")
    reg = default_registry()
    specs = [_spec(args.impl, b, n, c, "fwd", args.budget) for c in COUPLINGS for b, n in FWD_SHAPES]
    specs += [_spec(args.impl, b, n, c, "fwd+bwd", args.budget) for c in COUPLINGS for b, n in BWD_SHAPES]
    rows = []
    with Store(out / "usercall.db") as st:
        run = st.start_run("usercall", "cuda", env, label=f"user call vs bare kernel, {args.impl}")
        for spec in specs:
            t0 = time.perf_counter()
            row, fatal = run_case(spec, reg, copy_bandwidth_gbs=bw)
            st.add_result(run, row)
            row["coupling"] = (spec.problem or {}).get("coupling", "laplacian")
            rows.append(row)
            print(f"{spec.case_id}: {row['status']} {row.get('time_median_s')} / {row.get('kernel_time_median_s')} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
            if fatal:
                print("usercall_gpu: CUDA context broken; stopping", file=sys.stderr)
                break
        st.finish_run(run)
    host = _host_cost(args.impl)
    keep = ("impl", "batch", "n", "coupling", "mode", "status", "reason", "time_median_s", "ideal_bytes", "gbps",
            "roofline_pct", "kernel_time_median_s", "kernel_ideal_bytes", "kernel_gbps", "kernel_roofline_pct",
            "rel_err", "host_s_per_call", "kernel_host_s_per_call", "kernel_error")
    doc = {"env": env, "rows": [{k: r.get(k) for k in keep} for r in rows], "host_cost": host,
           "host_shape": HOST_SHAPE, "host_calls": HOST_CALLS}
    (out / "usercall.json").write_text(json.dumps(doc, indent=1, default=str))
    md = [f"# {args.impl}: user call (bk_core) vs bare kernel", "",
          f"{env.get('gpu')}, torch {env.get('torch')}, triton {env.get('triton')}, git {env.get('git_sha')}, "
          f"copy bandwidth {bw:.0f} GB/s; float32, z = 1j, mode cold (L2 flushed), median.", "",
          *_table(rows), "",
          f"Eager host cost, {HOST_CALLS} back-to-back forward calls at B x N = {HOST_SHAPE[0]} x {HOST_SHAPE[1]}, "
          f"one synchronisation: user call {1e6 * host['call_s_per_call']:.1f} µs, bare kernel "
          f"{1e6 * host['kernel_s_per_call']:.1f} µs per call."]
    (out / "usercall.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
