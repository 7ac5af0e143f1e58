"""A SYNTHETIC results database for the report tests — invented numbers, never a measurement.

It is written through :class:`bkbench.store.Store` the way the runner writes results: one run row with an
environment header, one results row per case with a status (ok / incorrect / oom / timeout / crash /
skipped) and a reason, raw timing samples in ``samples_json``, energy columns, and ``options_json`` carrying
``window`` (lut_green) and ``gauss`` (LNS variants). Times follow known laws chosen so the analysis has
something to find — a latency floor plus a linear term for the BK-core, a quadratic term for attention — so a
test can check the report recovers them. Every run is labelled "SYNTHETIC FIXTURE" and its GPU name says so.

Usage::

    from tests.fixtures_report import make_fixture_db
    path = make_fixture_db(tmp_path / "fixture.db", size="small")
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bkbench.store import Store

FIXTURE_GPU = "SYNTHETIC FIXTURE GPU (not a measurement)"
COPY_BW = 3000.0  # GB/s, invented
B, D = 8, 512  # equal-work shape: BK-core runs B*D chains of length N
CHAINS = B * D

# time laws in seconds: t(N) = floor + lin * N + quad * N^2 for the fixed (B, D) above (forward)
LAWS: dict[str, dict[str, Any]] = {
    "triton_fused": dict(kind="bk", floor=2.0e-5, lin=3.0e-8, quad=0.0, bwd=2.6, bytes_per_el=16, power=420.0),
    "assoc_scan": dict(kind="bk", floor=2.0e-5, lin=1.1e-7, quad=0.0, bwd=2.9, bytes_per_el=16, power=380.0),
    "thomas": dict(kind="bk", floor=3.0e-5, lin=3.0e-7, quad=0.0, bwd=3.1, bytes_per_el=16, power=300.0,
                   depth=2e-8),
    "naive_loop": dict(kind="bk", floor=2.0e-3, lin=5.0e-6, quad=0.0, bwd=3.0, bytes_per_el=16, power=200.0),
    "ssm_fla_ssd": dict(kind="ssm", floor=1.5e-4, lin=6.0e-8, quad=0.0, bwd=2.5, bytes_per_el=24, power=450.0),
    "ssm_selective_scan_parallel": dict(kind="ssm", floor=8.0e-5, lin=4.0e-7, quad=0.0, bwd=2.7, bytes_per_el=24,
                                        power=400.0),
    "attention_sdpa_flash": dict(kind="attention", floor=2.0e-5, lin=0.0, quad=1.8e-11, bwd=2.8, bytes_per_el=12,
                                 power=600.0),
    "attention_sdpa_math": dict(kind="attention", floor=4.0e-5, lin=0.0, quad=9.0e-11, bwd=2.4, bytes_per_el=12,
                                power=550.0, oom_from=32768),
}
LUT_WINDOWS = {0: 6.6e-2, 2: 3.2e-3, 4: 2.2e-4, 8: 8.4e-7, 16: 1.5e-7}  # rel_err per window (fp32 floor)
LNS_VARIANTS = {"computed": (2.4e-7, 1.6), "table": (9.0e-7, 1.2)}  # rel_err, slowdown vs thomas


def _env(sha: str, label: str) -> dict[str, Any]:
    return {
        "date": "2000-01-01T00:00:00+00:00", "host": "fixture-host", "platform": "synthetic", "python": "3.12",
        "torch": "synthetic", "triton": "synthetic", "git_sha": sha, "gpu": FIXTURE_GPU, "driver": "synthetic",
        "cuda": "synthetic", "copy_bandwidth_gbs": COPY_BW, "note": label,
    }


def _samples(rng: np.random.Generator, median: float, count: int = 25, spread: float = 0.02) -> list[float]:
    s = median * np.exp(rng.normal(0.0, spread, size=count))
    s *= median / np.median(s)  # the stored median is the samples' median
    return [float(x) for x in s]


def _timed_row(rng: np.random.Generator, t: float, ideal_bytes: float | None, elements: float,
               power: float | None, capped: bool = False, count: int = 25) -> dict[str, Any]:
    samples = _samples(rng, t, count)
    arr = np.asarray(samples)
    row: dict[str, Any] = {
        "timing_mode": "cold",
        "time_median_s": float(np.median(arr)),
        "time_p20_s": float(np.quantile(arr, 0.2)),
        "time_p80_s": float(np.quantile(arr, 0.8)),
        "time_iqr_s": float(np.quantile(arr, 0.75) - np.quantile(arr, 0.25)),
        "time_mean_s": float(arr.mean()),
        "time_std_s": float(arr.std(ddof=1)),
        "time_ci95_s": float(1.96 * 1.2533 * arr.std(ddof=1) / math.sqrt(arr.size)),
        "n_samples": int(arr.size),
        "samples_json": samples,
        "peak_mem_bytes": int(ideal_bytes * 1.5) if ideal_bytes else None,
        "wall_s": float(t * count + 0.01),
    }
    if ideal_bytes:
        gbps = ideal_bytes / row["time_median_s"] / 1e9
        row.update(ideal_bytes=int(ideal_bytes), gbps=gbps, roofline_pct=100.0 * gbps / COPY_BW)
    if power is None:
        row.update(energy_status="unavailable: synthetic fixture has no NVML for this case")
    else:
        idle = 110.0
        trials = [{"power_w": power * (1 + 0.01 * k), "telemetry": {"power_capped": capped and k == 0}}
                  for k in range(4)]
        e = power * t
        row.update(
            energy_j_per_call=e,
            energy_dynamic_j_per_call=(power - idle) * t,
            energy_j_per_element=e / elements,
            power_avg_w=power,
            power_idle_w=idle,
            energy_status="ok",
            energy_json={"status": "ok", "trials": trials, "power_capped_trials": int(capped)},
        )
    return row


def _law_time(law: dict[str, Any], n: int, mode: str, scale: float = 1.0, chains: int = CHAINS) -> float:
    t = law["floor"] + (law["lin"] * n + law["quad"] * n * n) * chains / CHAINS + law.get("depth", 0.0) * n
    return scale * t * (law["bwd"] if mode == "fwd+bwd" else 1.0)


def _key(n: int, dtype: str, s: float = 0.0, b: int = B, d: int = D) -> str:
    return f"B{b}_N{n}_d{d}_{dtype}_s{s:g}"


def _add(store: Store, run: int, *, impl: str, kind: str, n: int, dtype: str, mode: str, status: str,
         options: dict[str, Any] | None = None, s: float = 0.0, b: int = B, d: int = D, group: str = "",
         **extra: Any) -> None:
    key = _key(n, dtype, s, b, d)
    opts = json.dumps(options or {}, sort_keys=True)
    row = {
        "case_id": f"{impl}|{key}|{mode}|{opts}", "suite": "gpu", "case_key": key, "impl": impl, "kind": kind,
        "n": n, "batch": b, "d": d, "dtype": dtype, "sparsity": s, "mode": mode, "options_json": opts,
        "device": "cuda:0", "status": status, "group": group,  # group: not a column -> metrics_json, as the runner
    }
    row.update(extra)
    store.add_result(run, row)


CONSTANT_WORK = 1 << 24  # elements of the constant-work sweep (like the gpu suite's group "bk-n")


def _constant_work_shape(n: int) -> tuple[int, int]:
    chains = max(1, CONSTANT_WORK // n)
    batch = max(1, chains // D)
    return batch, chains // batch


def _fill_constant_work(store: Store, run: int, rng: np.random.Generator, ns: list[int], speed: dict[str, float],
                        skip_n: set[int]) -> None:
    """Group "bk-n": forward BK-core over N with B*d*N fixed (batch shrinks as N grows)."""
    for impl in ("triton_fused", "assoc_scan", "thomas", "naive_loop"):
        law = LAWS[impl]
        for n in ns:
            if n in skip_n:
                continue
            b, d = _constant_work_shape(n)
            if impl == "naive_loop" and n >= 16384:
                _add(store, run, impl=impl, kind="bk", n=n, dtype="float32", mode="fwd", status="timeout", b=b, d=d,
                     group="bk-n", reason="case exceeded the 120 s worker timeout [synthetic]")
                continue
            occupancy = 1.0 + 0.3 * math.sqrt(256 / (b * d))  # few long chains fill the GPU less well
            t = _law_time(law, n, "fwd", speed.get(impl, 1.0), chains=b * d) * occupancy
            row = _timed_row(rng, t, 16 * b * d * n, b * d * n, None)
            _add(store, run, impl=impl, kind="bk", n=n, dtype="float32", mode="fwd", status="ok", b=b, d=d,
                 group="bk-n", rel_err=2e-7, tolerance=1e-5, **row)


def _fill_run(store: Store, run: int, rng: np.random.Generator, ns: list[int], speed: dict[str, float],
              crash: bool = True, equal_work_fwd: bool = True) -> None:
    big = max(ns)
    n_mid = ns[len(ns) // 2]
    variant_ns = ns if equal_work_fwd else [n_mid]  # dtype / window / LNS variants: one shape, as in the gpu suite
    # the constant-work sweep owns the (B, d) = (8, 512) forward case at n_mid (in a suite the first group that
    # lists a case owns it); the equal-work sweep below leaves that N out, and the report shares the point
    _fill_constant_work(store, run, rng, ns, speed, set())
    for mode in ("fwd", "fwd+bwd"):
        for impl, law in LAWS.items():
            kind = law["kind"]
            dtype = "float32" if kind == "bk" else "bfloat16"
            scale = speed.get(impl, 1.0)
            group = "baselines" if kind != "bk" else ("bk-equal-work" if mode == "fwd" else "bk-fwd+bwd")
            if kind == "bk" and mode == "fwd" and not equal_work_fwd:
                continue
            for n in ns:
                if kind == "bk" and mode == "fwd" and n == n_mid:
                    continue  # owned by the constant-work group "bk-n"
                el = CHAINS * n
                t = _law_time(law, n, mode, scale)
                if n >= law.get("oom_from", 1 << 62):
                    _add(store, run, impl=impl, kind=kind, n=n, dtype=dtype, mode=mode, status="oom", group=group,
                         reason=f"torch.OutOfMemoryError: CUDA out of memory (tried to allocate {8 * n * n * 2 >> 20}"
                                " MiB) [synthetic]")
                    continue
                if impl == "naive_loop" and n >= 16384:
                    _add(store, run, impl=impl, kind=kind, n=n, dtype=dtype, mode=mode, status="timeout",
                         group=group, reason="case exceeded the 120 s worker timeout [synthetic]")
                    continue
                if crash and impl == "ssm_selective_scan_parallel" and n == big and mode == "fwd+bwd":
                    _add(store, run, impl=impl, kind=kind, n=n, dtype=dtype, mode=mode, status="crash",
                         group=group, reason="worker exited with signal 11 (SIGSEGV) [synthetic]")
                    continue
                capped = impl == "attention_sdpa_flash" and n == big
                power = law["power"] if impl in ("triton_fused", "thomas", "attention_sdpa_flash",
                                                 "ssm_fla_ssd") else None
                row = _timed_row(rng, t, law["bytes_per_el"] * el if kind == "bk" else None, el, power, capped)
                err = 2.0e-7 if kind == "bk" else 4.0e-3
                _add(store, run, impl=impl, kind=kind, n=n, dtype=dtype, mode=mode, status="ok", group=group,
                     rel_err=err * (1 + 0.1 * rng.random()), tolerance=1e-5 if kind == "bk" else 2e-2, **row)
            if kind == "bk" and impl == "thomas":  # a float64 series too
                for n in variant_ns:
                    t = _law_time(law, n, mode, 1.9)
                    row = _timed_row(rng, t, 32 * CHAINS * n, CHAINS * n, None)
                    _add(store, run, impl=impl, kind=kind, n=n, dtype="float64", mode=mode, status="ok",
                         group="bk-dtype", rel_err=3e-16, tolerance=1e-12, **row)
        # approximate and LNS variants (forward only; fwd+bwd declined: not differentiable)
        for m, err in LUT_WINDOWS.items():
            for n in variant_ns:
                opts = {"window": m}
                if mode == "fwd+bwd":
                    _add(store, run, impl="lut_green", kind="bk", n=n, dtype="float32", mode=mode, status="skipped",
                         options=opts, group="lut-window", reason="lut_green is not differentiable (declines fwd+bwd)")
                    continue
                tol = 1e-3  # declared tolerance of the approximation: windows 0 and 2 fail it
                if err > tol:
                    _add(store, run, impl="lut_green", kind="bk", n=n, dtype="float32", mode=mode,
                         status="incorrect", options=opts, rel_err=err, tolerance=tol, group="lut-window",
                         reason=f"relative error {err:.2g} exceeds the declared tolerance {tol:.2g}")
                    continue
                t = _law_time(LAWS["triton_fused"], n, mode) * (1.1 + 0.15 * m)
                row = _timed_row(rng, t, 16 * CHAINS * n, CHAINS * n, None)
                _add(store, run, impl="lut_green", kind="bk", n=n, dtype="float32", mode=mode, status="ok",
                     options=opts, rel_err=err, tolerance=tol, group="lut-window", **row)
        for gauss, (err, slow) in LNS_VARIANTS.items():
            for n in variant_ns:
                opts = {"gauss": gauss}
                if mode == "fwd+bwd":
                    continue
                t = _law_time(LAWS["assoc_scan"], n, mode) * slow
                row = _timed_row(rng, t, 16 * CHAINS * n, CHAINS * n, None)
                _add(store, run, impl="lns", kind="bk", n=n, dtype="float32", mode=mode, status="ok", options=opts,
                     rel_err=err, tolerance=1e-5, group="lns", **row)
        _add(store, run, impl="lns_triton", kind="bk", n=ns[0], dtype="float64", mode=mode, status="skipped",
             options={"gauss": "table"}, reason="table precision too coarse for float64 work [synthetic]")
        # sparsity sweep at one N: BK-core (couplings zeroed) and block-sparse attention
        n_sp = ns[len(ns) // 2]
        for s in (0.0, 0.1, 0.5, 0.9):
            for impl in ("triton_fused", "thomas") if s else ():  # their s = 0 rows come from the N sweeps
                law = LAWS[impl]
                t = _law_time(law, n_sp, mode, speed.get(impl, 1.0)) * (1.0 - 0.3 * s)
                row = _timed_row(rng, t, 16 * CHAINS * n_sp, CHAINS * n_sp, None)
                _add(store, run, impl=impl, kind="bk", n=n_sp, dtype="float32", mode=mode, status="ok", s=s,
                     rel_err=2e-7, tolerance=1e-5, group="bk-sparsity", **row)
            t = _law_time(LAWS["attention_sdpa_flash"], n_sp, mode) * (1.0 - s + 0.05) * 1.3
            row = _timed_row(rng, t, None, CHAINS * n_sp, None)
            _add(store, run, impl="attention_flex_local", kind="attention", n=n_sp, dtype="bfloat16", mode=mode,
                 status="ok", s=s, rel_err=5e-3, tolerance=2e-2, options={"tile": 128},
                 group="block-sparse-attention", **row)
    # impl="auto" dispatch rows over (N, batch): which implementation auto picked (forward)
    for b in (1, 8, 64):
        for n in ns:
            chosen = "assoc_scan" if b * n < 4096 else "triton_fused"
            t = _law_time(LAWS[chosen], n, "fwd") * b / B
            row = _timed_row(rng, t, 16 * b * D * n, b * D * n, None)
            _add(store, run, impl="auto", kind="bk", n=n, dtype="float32", mode="fwd", status="ok", b=b,
                 rel_err=2e-7, tolerance=1e-5, auto_impl=chosen, group="auto-dispatch", **row)
    # tuned vs default configuration of triton_fused per shape bucket
    for n in ns:
        for config, factor in (("default", 1.0), ("tuned", 0.8 if n >= 4096 else 0.95)):
            t = _law_time(LAWS["triton_fused"], n, "fwd") * factor
            row = _timed_row(rng, t, 16 * CHAINS * n, CHAINS * n, None)
            _add(store, run, impl="triton_fused", kind="bk", n=n, dtype="float32", mode="fwd", status="ok",
                 options={"config": config}, rel_err=2e-7, tolerance=1e-5, group="tuning", **row)


def make_fixture_db(path: str | Path, size: str = "small", two_runs: bool = True, seed: int = 0,
                    equal_work_fwd: bool = True) -> Path:
    """Write the synthetic fixture database at ``path`` (replaced if it exists) and return the path.

    size: ``"small"`` (N = 256..65536 in steps of 4x: 5 sizes, ~230 rows per run) or ``"full"`` (N = 256..65536
    in steps of 2x). two_runs: also write a second run (a "candidate commit" whose triton_fused is 10 %
    faster and whose planted crash of ssm_selective_scan_parallel is gone) for the comparison.
    equal_work_fwd: also time the BK-core forward at the baselines' (B, d) = (8, 512) over every N (group
    "bk-equal-work"); when False the BK-core forward has only the constant-work sweep "bk-n" (plus the
    shape's N = 4096 point), as in the gpu suite today.
    """
    if size not in ("small", "full"):
        raise ValueError(f"size: must be 'small' or 'full', got {size!r}")
    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    ns = [256 * 4**k for k in range(5)] if size == "small" else [256 * 2**k for k in range(9)]
    rng = np.random.default_rng(seed)
    with Store(path) as store:
        store.conn.execute("PRAGMA synchronous=OFF")  # a throw-away test file: skip fsync per committed row
        label = "SYNTHETIC FIXTURE - not a measurement"
        run = store.start_run("gpu", "cuda", _env("fixture000a", label), {"suite": "gpu", "fixture": True},
                              label=label)
        _fill_run(store, run, rng, ns, speed={}, equal_work_fwd=equal_work_fwd)
        store.finish_run(run)
        if two_runs:
            label_b = "SYNTHETIC FIXTURE B - not a measurement"
            run_b = store.start_run("gpu", "cuda", _env("fixture000b", label_b), {"suite": "gpu", "fixture": True},
                                    label=label_b)
            _fill_run(store, run_b, rng, ns, speed={"triton_fused": 0.9}, crash=False,
                      equal_work_fwd=equal_work_fwd)
            store.finish_run(run_b)
    return path


if __name__ == "__main__":  # python -m tests.fixtures_report OUT.db [small|full]
    import sys

    out = make_fixture_db(sys.argv[1] if len(sys.argv) > 1 else "fixture_report.db",
                          sys.argv[2] if len(sys.argv) > 2 else "small")
    print(out)
