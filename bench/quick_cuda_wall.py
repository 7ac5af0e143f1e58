"""Device script: the wall time of ``bkbench run quick --device cuda`` on a fresh machine (issue 19).

Run from the repository root on a CUDA machine (fla-core installed for the fla baselines)::

    PYTHONPATH=$PWD python3 bench/quick_cuda_wall.py --out $OUT [--extra "--warm-jobs 8"] [--limit-s 540]

Empty Triton and torch.compile caches (fresh temporary directories, as on a new machine), then the
command itself as a subprocess, timed. Writes ``OUT/quick.db`` (the run), ``OUT/quick.log`` (its output),
``OUT/summary.json`` and ``OUT/summary.md``: total wall time, warm-up time, rows by status, every case's
``compile_s`` (warm-up call) and ``first_call_s`` (the timed worker's first call: what is left of compiling and
autotuning after the warm-up), largest first. ``--also-no-warm`` runs the same once more with ``--no-warm`` into
``OUT/quick-nowarm.db`` (fresh caches again) for the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path


def run_once(out: Path, name: str, extra: list[str], limit_s: float, suite: str = "quick",
             device: str = "cuda") -> dict:
    caches = Path(tempfile.mkdtemp(prefix=f"bkbench-caches-{name}-"))  # empty: as on a fresh machine
    env = dict(os.environ, TRITON_CACHE_DIR=str(caches / "triton"), TORCHINDUCTOR_CACHE_DIR=str(caches / "inductor"))
    db = out / f"{name}.db"
    cmd = [sys.executable, "-m", "bkbench", "run", suite, "--device", device, "--db", str(db), "--no-progress", *extra]
    t0 = time.monotonic()
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:  # stop it cleanly (SIGTERM: the run is stored as interrupted)
            proc.terminate()
            code = proc.wait(timeout=60)
    wall = time.monotonic() - t0
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM results")]
        (planned,) = conn.execute("SELECT json_extract(config_json, '$.cases') FROM runs").fetchone()
    statuses: dict[str, int] = {}
    cases = []
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        m = json.loads(r["metrics_json"] or "{}")
        cases.append({"case": f"{r['impl']} {r['case_key']} {r['mode']}", "status": r["status"],
                      "compile_s": r.get("compile_s"), "compile_source": m.get("compile_source"),
                      "first_call_s": m.get("first_call_s"), "wall_s": r["wall_s"], "gpu": r.get("gpu_name")})
    text = (out / f"{name}.log").read_text()
    warm = [line for line in text.splitlines() if line.startswith("warm-up:")]
    return {"command": shlex.join(cmd), "exit_code": code, "wall_s": wall, "planned": planned, "stored": len(rows),
            "statuses": statuses, "warm_lines": warm, "cases": cases}


def markdown(name: str, res: dict) -> str:
    lines = [f"## {name}", "", f"`{res['command']}`: exit {res['exit_code']}, **{res['wall_s']:.0f} s** wall, "
             f"{res['stored']} of {res['planned']} cases stored {res['statuses']}", ""]
    lines += [f"- {w}" for w in res["warm_lines"]]
    lines += ["", "| case | status | compile_s | source | first_call_s | wall_s |", "|---|---|---|---|---|---|"]
    key = lambda c: -(c["first_call_s"] or 0) - (c["compile_s"] or 0)  # noqa: E731
    for c in sorted(res["cases"], key=key)[:40]:
        lines.append(f"| {c['case']} | {c['status']} | {c['compile_s'] or 0:.2f} | {c['compile_source'] or ''} | "
                     f"{c['first_call_s'] or 0:.2f} | {c['wall_s'] or 0:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", default="", help="more arguments for bkbench run, e.g. '--warm-jobs 8'")
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to try the script")
    ap.add_argument("--also-no-warm", action="store_true", help="also run once with --no-warm")
    ap.add_argument("--limit-s", type=float, default=540.0,
                    help="stop a run (SIGTERM, rows kept) after this many seconds (default 540)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra, where = shlex.split(args.extra), (args.suite, args.device)
    results = {"quick": run_once(out, "quick", extra, args.limit_s, *where)}
    if args.also_no_warm:
        results["quick-nowarm"] = run_once(out, "quick-nowarm", [*extra, "--no-warm"], args.limit_s, *where)
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    md = "".join(markdown(k, v) for k, v in results.items())
    (out / "summary.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
