"""``bkbench tune``: autotune ``triton_fused`` launch configurations on this GPU and cache the winners."""

from __future__ import annotations

import argparse

DTYPES = ("float32", "bfloat16", "float16")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="autotune triton_fused configurations per shape bucket (cached per GPU)")
    p.add_argument("--impl", default="triton_fused", help="implementation to tune (only triton_fused has a tuner)")
    p.add_argument("--shapes", default=None,
                   help="comma-separated BATCHxN pairs (default: the issue shapes, e.g. 16384x1024,4096x4096,...)")
    p.add_argument("--dtype", default="float32", help="input dtype(s), comma-separated: float32, bfloat16, float16")
    p.add_argument("--coupling", default="k,scalar", help="k, scalar or both (comma-separated)")
    p.add_argument("--no-bwd", action="store_true", help="tune the forward kernel only")
    p.add_argument("--budget", type=float, default=0.2, help="seconds of timing per configuration")
    p.add_argument("--exhaustive", action="store_true",
                   help="also time the whole forward space and report how far the tuner's pick is from its best")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write every problem's entry (and the exhaustive sweep) with the environment header")
    p.add_argument("--write-table", default=None, metavar="PATH",
                   help="write this GPU's tuned entries as a packaged table (merged into PATH if it holds one)")
    p.add_argument("--from-cache", action="store_true",
                   help="with --write-table: measure nothing, write the table from the user cache")
    p.add_argument("--jobs", type=int, default=None,
                   help="processes that compile each stage's candidates in parallel before they are timed "
                        "(default: the cores less one, at most 15; 1: compile inside the timing process)")
    p.add_argument("--dry-run", action="store_true", help="list the problems and the search space, measure nothing")
    p.set_defaults(func=run)


def _dtypes(text: str) -> list:
    import torch

    names = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in names if d not in DTYPES]
    if bad or not names:
        raise ValueError(f"--dtype: expected one or more of {', '.join(DTYPES)} (comma-separated), got {text!r}")
    return [getattr(torch, d) for d in names]


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    import torch
    from rich.table import Table

    from bkbench.harness import tune_compile, tuning
    from bkbench.harness.console import make_console

    if args.impl != "triton_fused":
        raise ValueError(f"--impl: only 'triton_fused' has a tuner, got {args.impl!r}")
    shapes = tuning.parse_shapes(args.shapes) if args.shapes else tuning.default_shapes()
    kinds = [c.strip() for c in args.coupling.split(",") if c.strip()]
    bad = [c for c in kinds if c not in ("k", "scalar")]
    if bad or not kinds:
        raise ValueError(f"--coupling: expected k, scalar or k,scalar, got {args.coupling!r}")
    if args.budget <= 0:
        raise ValueError(f"--budget: must be > 0 seconds, got {args.budget}")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs: need at least 1, got {args.jobs}")
    if args.from_cache and not args.write_table:
        raise ValueError("--from-cache: give --write-table PATH too (it only writes a table)")
    probs = tuning.iter_problems(shapes, _dtypes(args.dtype), [c == "scalar" for c in kinds])
    console = make_console()
    if args.dry_run:
        n2 = len(tuning.stage2(tuning.stage1()[0]))
        console.print(f"{len(probs)} problem(s); forward space {len(tuning.fwd_space())} configs, fewer distinct "
                      f"launches per shape "
                      f"(staged search measures {len(tuning.stage1())} + {n2}); "
                      f"backward space {len(tuning.bwd_space())}; cache {tuning.cache_path()}")
        for p in probs:
            console.print(f"  {tuning.key(tuning.gpu_name(), p.dtype, p.uniform, p.batch, p.n)}")
        return 0
    if args.from_cache:
        return _write_table(args, console)
    if not torch.cuda.is_available():
        raise ValueError("tune: needs a CUDA GPU (timings under the CPU interpreter mean nothing)")
    table = Table(title=f"triton_fused tuning on {tuning.gpu_name()} (cache {tuning.cache_path()})")
    for col in ("bucket", "B x N", "dtype", "coupling", "config", "us", "default us", "speedup", "searched",
                "bwd us", "vs exhaustive"):
        table.add_column(col)
    rows = []
    workers = args.jobs if args.jobs is not None else max(1, min(15, (os.cpu_count() or 2) - 1))
    for p, entry in tune_compile.tune_many(probs, workers=workers, budget_s=args.budget, with_bwd=not args.no_bwd,
                                           log=console.print):
        row = {"batch": p.batch, "n": p.n, "dtype": str(p.dtype).replace("torch.", ""), "uniform": p.uniform,
               "key": tuning.key(tuning.gpu_name(), p.dtype, p.uniform, p.batch, p.n), "entry": entry}
        within = "-"
        if args.exhaustive:
            ex = tune_compile.exhaustive(p, workers=workers, budget_s=args.budget, log=console.print)
            best = min(ex.values())
            mine = tuning.time_of(entry["config"], ex, p.batch, p.n)
            row.update(exhaustive_ms=ex, exhaustive_best_ms=best, pick_vs_best=mine / best - 1)
            within = f"{100 * (mine / best - 1):+.1f}%"
        rows.append(row)
        if args.json:  # after every problem: a call cut short keeps what it measured
            _dump(Path(args.json), rows)
        default = entry.get("default_ms")
        table.add_row(tuning.bucket(p.batch, p.n), f"{p.batch}x{p.n}", row["dtype"], "scalar" if p.uniform else "k",
                      json.dumps(entry["config"], sort_keys=True), f"{entry['ms'] * 1e3:.1f}",
                      f"{default * 1e3:.1f}" if default else "-",
                      f"{default / entry['ms']:.2f}x" if default else "-",
                      f"{entry['searched']}/{entry['space']}",
                      f"{entry['bwd_ms'] * 1e3:.1f}" if entry.get("bwd_ms") else "-", within)
    console.print(table)
    if args.write_table:
        return _write_table(args, console)
    return 0


def _dump(path, rows) -> None:
    import json

    from bkbench.harness.env import environment

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": environment(), "rows": rows}, indent=1, default=str) + "\n")


def _write_table(args: argparse.Namespace, console) -> int:
    from pathlib import Path

    from bkbench.harness import tuned_table, tuning
    from bkbench.kernels.bk import _triton_fused_tables as tables

    gpu = tables.gpu_id()
    entries = tuned_table.entries_of(gpu, tuning.load_cache())
    note = ("triton_fused configs measured on this GPU by `bkbench tune` (staged search, float64-checked); "
            "entries carry their own time, the default's time and when they were measured")
    table = tuned_table.write_table(Path(args.write_table), gpu, entries, note)
    console.print(f"wrote {len(table['entries'])} entries ({len(entries)} from this GPU's cache) for "
                  f"{gpu.label()} to {args.write_table}")
    return 0
