"""H100 history: this script produced the H100 table kernels/bk/data/triton_fused_h100.json with the kernels of commit 969fdbc (`git show 969fdbc:bench/triton_fused_table.py`). It reaches into kernel internals that the issue-22 rewrite replaced (one source file split in four, operands instead of k, the exact path folded in), so it no longer runs against this tree; bench/triton_fused_h200.py is its successor. It exits with this message.

Rebuild ``bkbench/data/tuned_h100.json`` from measured files of ``bench/triton_fused_dev.py``: per (coupling,
shape bucket) the fastest forward config measured, and the fastest backward config at the nearest measured N.
Every entry names the file it came from; nothing is estimated. Each entry also carries the time of the built-in
default configuration at the same shape (``default_ms``, ``bwd_default_ms``: the report's tuned-vs-default
table) when the files measured it.

Forward rows are read from the stages ``store`` (``store_fwd``), ``seq``, ``final`` and ``sweep2``, and from tuner
caches (``tuned_triton_fused.json``: the staged tuner's winners and their default's time); backward rows from
``store_bwd``, ``bwdlin`` and the caches; a bucket's backward comes from the rows at its own (B, N) when
there are any (else the nearest N), ranked like the forward (CUDA-graph time below 2^24 elements where
measured). Only a bucket's own shape counts (N a power of two, B*N the bucket's element
count): the N = 768 / 520 rows of stage ``seq`` are diagnostics. Below 2^24 elements an eager call is bound by
the host's launch path, so those buckets are ranked by CUDA-graph replay time (rows without one are skipped
there). Two-tile (``seq = 2``) rows count: ``plan`` applies seq 2 only where the halo'd chunks would take three
or more tiles (N in (960, 1024] for the default tile), so a bucket's seq 2 entry leaves its smaller N on halo'd
chunks, where seq 2 loses. Flagged rows (chains recomputed by the exact kernel) are skipped.

    python3 bench/triton_fused_table.py reports/triton_fused/run4/call1_seq_gate_final.json \
        reports/triton_fused/run4/call2_tuned_cache.json reports/triton_fused/run4/call3_final_sweep.json \
        reports/triton_fused/run5/call1_bwdlin_gate_tune_sweep_ncu.json \
        reports/triton_fused/run5/call1_tuned_cache.json reports/triton_fused/run6/call1_parts_host_seq_gate_final.json
"""

from __future__ import annotations

import sys as _sys

if __name__ == "__main__":
    _sys.exit(__doc__.split("\n\n")[0])

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bkbench.kernels.bk.triton_fused import BwdConfig, FusedConfig  # noqa: E402  (after the path insert)

GPU = "NVIDIA H100 80GB HBM3"


def _cfg_key(cfg: dict) -> str:
    return json.dumps(FusedConfig.from_dict(cfg).to_dict(), sort_keys=True)


def _tuner_entries(d: dict):
    """(B, N, scalar, entry) of the float32 entries of a tuner cache (keys gpu|dtype|coupling|N{n}_E{elements})."""
    for key, e in d.get("entries", {}).items():
        _, dtype, coupling, bucket = key.split("|")
        n, el = (int(x[1:]) for x in bucket.split("_"))
        if dtype == "float32":
            yield el // n, n, coupling == "scalar", e


def _own_shape(r: dict) -> bool:
    """N and B*N powers of two: the shape a bucket is named after (not a diagnostic shape inside it)."""
    return r["N"] & (r["N"] - 1) == 0 and (r["B"] * r["N"]) & (r["B"] * r["N"] - 1) == 0


def forward_rows(d: dict) -> list[dict]:
    """(B, N, scalar, cfg, ms) of every unflagged forward timing in one dev-script JSON or tuner cache."""
    rows = []
    for r in d.get("store_fwd", []) + d.get("seq", []) + d.get("final", []):
        if "ms" in r and not r.get("flagged"):
            gms = r.get("graph_ms", r.get("ms_graph"))
            rows.append({"B": r["B"], "N": r["N"], "scalar": r["scalar"], "cfg": r["cfg"], "ms": r["ms"],
                         "graph_ms": gms if gms is not None and math.isfinite(gms) else None})
    for r in d.get("sweep2", []):
        rows += [{"B": r["B"], "N": r["N"], "scalar": False, "cfg": json.loads(c), "ms": ms}
                 for c, ms in r["sweep"].items() if math.isfinite(ms)]
    for b, n, sc, e in _tuner_entries(d):
        if e.get("searched"):
            rows.append({"B": b, "N": n, "scalar": sc, "cfg": e["config"], "ms": e["ms"]})
            if e.get("default_ms"):
                rows.append({"B": b, "N": n, "scalar": sc, "cfg": FusedConfig().to_dict(), "ms": e["default_ms"]})
    return [r for r in rows if _own_shape(r)]


def rank_time(r: dict) -> float:
    """The time a bucket is ranked by: eager from 2^24 elements up, CUDA-graph replay below (inf: not ranked)."""
    if r["B"] * r["N"] >= 1 << 24:
        return r["ms"]
    return r.get("graph_ms") or math.inf


def backward_rows(d: dict) -> list[dict]:
    rows = [{"B": r["B"], "N": r["N"], "cfg": r["cfg"], "ms": r["ms"]} for r in d.get("store_bwd", []) if "ms" in r]
    rows += [{"B": r["B"], "N": r["N"], "scalar": r["scalar"], "cfg": r["bwd_cfg"], "ms": r["bwd_ms"],
              "graph_ms": r.get("bwd_graph_ms")}
             for r in d.get("bwdlin", []) if "bwd_ms" in r and not r.get("flagged")]
    for b, n, sc, e in _tuner_entries(d):
        if e.get("bwd_ms") and e.get("bwd_config"):
            rows.append({"B": b, "N": n, "scalar": sc, "cfg": e["bwd_config"], "ms": e["bwd_ms"],
                         "default_ms": e.get("bwd_default_ms")})
    return rows


def backward_candidates(bwd: list[dict], b: int, n: int, scalar: bool) -> list[dict]:
    """The backward rows a bucket's entry is chosen from: those measured at its own shape (B, N) and coupling
    (rows that do not record the coupling count for both), else those at the nearest measured N (a row of
    another batch size at the same N is not comparable in time)."""
    own = [r for r in bwd if r["B"] == b and r["N"] == n and r.get("scalar", scalar) == scalar]
    if own:
        return own
    near = min({r["N"] for r in bwd}, key=lambda m: abs(math.log2(m) - math.log2(n)))
    return [r for r in bwd if r["N"] == near]


def fastest_backward(cands: list[dict]) -> dict:
    """The fastest of ``cands`` by :func:`rank_time` where any of them has one, else by eager time."""
    ranked = [c for c in cands if math.isfinite(rank_time(c))]
    return min(ranked, key=rank_time) if ranked else min(cands, key=lambda c: c["ms"])


def main(paths: list[str]) -> None:
    import torch

    from bkbench.harness import tuning

    dflt = _cfg_key(FusedConfig().to_dict())
    bdflt = BwdConfig().to_dict()
    fwd: dict[str, dict] = {}
    bwd: list[dict] = []
    timed: dict[tuple, float] = {}  # (B, N, scalar, config json) -> fastest time over the files
    envs = []
    for p in paths:
        d = json.load(open(p))
        env = d.get("environment", {})
        if env:
            envs.append(env)
        src = str(Path(p).resolve().relative_to(ROOT))
        for r in forward_rows(d):
            t = rank_time(r)
            if not math.isfinite(t):
                continue
            ck = (r["B"], r["N"], r["scalar"], _cfg_key(r["cfg"]))
            timed[ck] = min(timed.get(ck, math.inf), t)
            kk = tuning.key(GPU, torch.float32, r["scalar"], r["B"], r["N"])
            if kk not in fwd or t < rank_time(fwd[kk]):
                fwd[kk] = {**r, "file": src}
        bwd += [{**r, "file": src} for r in backward_rows(d)]
    env = envs[-1] if envs else {}
    path = tuning.DATA_DIR / tuning.PACKAGED[GPU]
    old = json.load(open(path))
    entries = {}
    for kk, r in sorted(fwd.items()):
        cands = backward_candidates(bwd, r["B"], r["N"], r["scalar"])
        bb = fastest_backward(cands)
        bd = [b.get("default_ms") or (b["ms"] if b["cfg"] == bdflt else None) for b in cands]
        bd = [x for x in bd if x]
        dms = timed.get((r["B"], r["N"], r["scalar"], dflt))  # ranked time (graph below 2^24 elements)
        extra = {k: v for k, v in (("default_ms", dms), ("bwd_default_ms", min(bd) if bd else None)) if v is not None}
        entries[kk] = {
            "config": FusedConfig.from_dict(r["cfg"]).to_dict(), "ms": r["ms"],
            **({"graph_ms": r["graph_ms"]} if r.get("graph_ms") else {}), "bwd_config": bb["cfg"],
            "bwd_ms": bb["ms"], **extra,
            "source": f"fastest forward measured at B={r['B']} N={r['N']} in {r['file']}"
                      f"{'' if r['B'] * r['N'] >= 1 << 24 else ' (ranked by CUDA-graph time)'}; backward: fastest at "
                      f"B={bb['B']} N={bb['N']} in {bb['file']}",
            "torch": env.get("torch"), "triton": env.get("triton"),
        }
    old["entries"] = entries
    old["note"] = ("Committed default table for triton_fused on the H100: the fastest measured forward per bucket "
                   "over the files " + ", ".join(paths) + "; rebuilt by bench/triton_fused_table.py.")
    with open(path, "w") as f:
        json.dump(old, f, indent=1, sort_keys=True)
        f.write("\n")
    for kk, e in entries.items():
        c, b = e["config"], e["bwd_config"]
        print(f"{kk}: seg {c['seg']} w{c['warps']} L{c['L']} M1 {c['M1']} store {c['store']} {e['ms'] * 1e3:.1f} us, "
              f"graph {e.get('graph_ms', math.nan) * 1e3:.1f} "
              f"(default {e.get('default_ms', math.nan) * 1e3:.1f}) | bwd seg {b['seg']} L{b['L']} w{b['warps']} "
              f"lin_exact {b.get('lin_exact')} {e['bwd_ms'] * 1e3:.1f} us")


if __name__ == "__main__":
    main(sys.argv[1:])
