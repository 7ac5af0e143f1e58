"""``bkbench tune``: autotune ``triton_fused`` launch configurations on this GPU and cache the winners."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="autotune triton_fused configurations per shape bucket (cached per GPU)")
    p.add_argument("--impl", default="triton_fused", help="implementation to tune (only triton_fused has a tuner)")
    p.add_argument("--shapes", default=None,
                   help="comma-separated BATCHxN pairs (default: the issue shapes, e.g. 16384x1024,4096x4096,...)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--coupling", default="k,scalar", help="k, scalar or both (comma-separated)")
    p.add_argument("--no-bwd", action="store_true", help="tune the forward kernel only")
    p.add_argument("--budget", type=float, default=0.2, help="seconds of timing per configuration")
    p.add_argument("--exhaustive", action="store_true",
                   help="also time the whole forward space and report how far the tuner's pick is from its best")
    p.add_argument("--dry-run", action="store_true", help="list the problems and the search space, measure nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch
    from rich.table import Table

    from bkbench import tuning
    from bkbench.console import make_console

    if args.impl != "triton_fused":
        raise ValueError(f"--impl: only 'triton_fused' has a tuner, got {args.impl!r}")
    shapes = tuning.parse_shapes(args.shapes) if args.shapes else tuning.default_shapes()
    kinds = [c.strip() for c in args.coupling.split(",") if c.strip()]
    bad = [c for c in kinds if c not in ("k", "scalar")]
    if bad or not kinds:
        raise ValueError(f"--coupling: expected k, scalar or k,scalar, got {args.coupling!r}")
    if args.budget <= 0:
        raise ValueError(f"--budget: must be > 0 seconds, got {args.budget}")
    dtype = getattr(torch, args.dtype)
    probs = tuning.iter_problems(shapes, [dtype], [c == "scalar" for c in kinds])
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
    if not torch.cuda.is_available():
        raise ValueError("tune: needs a CUDA GPU (timings under the CPU interpreter mean nothing)")
    table = Table(title=f"triton_fused tuning on {tuning.gpu_name()} (cache {tuning.cache_path()})")
    for col in ("bucket", "B x N", "coupling", "config", "us", "default us", "speedup", "searched", "bwd us",
                "vs exhaustive"):
        table.add_column(col)
    for p in probs:
        entry = tuning.tune(p, budget_s=args.budget, with_bwd=not args.no_bwd, log=console.print)
        within = "-"
        if args.exhaustive:
            ex = tuning.exhaustive(p, budget_s=args.budget)
            best = min(ex.values())
            mine = tuning.time_of(entry["config"], ex, p.batch, p.n)
            within = f"{100 * (mine / best - 1):+.1f}%"
        table.add_row(tuning.bucket(p.batch, p.n), f"{p.batch}x{p.n}", "scalar" if p.uniform else "k",
                      json.dumps(entry["config"], sort_keys=True), f"{entry['ms'] * 1e3:.1f}",
                      f"{entry['default_ms'] * 1e3:.1f}", f"{entry['default_ms'] / entry['ms']:.2f}x",
                      f"{entry['searched']}/{entry['space']}",
                      f"{entry['bwd_ms'] * 1e3:.1f}" if entry.get("bwd_ms") else "-", within)
    console.print(table)
    return 0
