"""``bkbench gate``: run the correctness battery; exit 1 on any failure, naming it."""

from __future__ import annotations

import argparse
import contextlib
import random

from bkbench.harness.gate import render, run_gate, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="correctness gate: every BK-core implementation vs the float64 reference")
    p.add_argument("--impl", nargs="+", action="extend", metavar="NAME",
                   help="implementations to gate (default: all of kind bk); repeatable")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quick", action="store_true", help="leave out the N >= 65536 cases")
    p.add_argument("--baselines", action="store_true", help="also gate every SSM / attention baseline")
    p.add_argument("--no-tuned", action="store_true",
                   help="leave out the implementations' own extra checks (registry field extra_checks; triton_fused: "
                        "its packaged-table / tuning-cache configurations on this device)")
    p.add_argument("--jobs", type=int, default=None, metavar="J",
                   help="processes for the tuned-config checks, which compile one kernel each (default: 8 on cuda, "
                        "1 on cpu)")
    p.add_argument("--no-anticheat", action="store_true",
                   help="leave out the anti-cheat checks (input mutation, output freshness and aliasing, determinism, "
                        "measured stream, physical floor)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="also register the implementations of this module or file (repeatable)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per case (default 2)")
    p.add_argument("--fresh", action="store_true", help="draw a random base seed (printed) instead of 0")
    p.add_argument("--json", default="bkbench-gate.json", metavar="PATH",
                   help="JSON summary path, rewritten after each implementation (\"complete\": false until the end)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bkbench.harness.console import make_console
    from bkbench.plugins import registry_with

    registry = registry_with(args.plugin)

    base = random.randrange(1, 10**6) if args.fresh else 0
    if args.fresh:
        print(f"gate: base seed {base}")
    err = make_console(stderr=True)
    count = 0

    def progress(impl: str, case: str) -> None:  # a status line on a terminal, a log line per check otherwise
        nonlocal count
        count += 1
        if err.is_terminal:
            status.update(f"gate: check {count}: {impl} :: {case}")
        else:
            err.print(f"gate: check {count}: {impl} :: {case}", highlight=False)

    with err.status("gate: starting", transient=True) if err.is_terminal else contextlib.nullcontext() as status:
        report = run_gate(registry=registry, impls=args.impl, device=args.device, quick=args.quick,
                          anticheat=not args.no_anticheat,
                          seeds=[base + i for i in range(args.seeds)], baselines=args.baselines,
                          tuned=not args.no_tuned, progress=progress,
                          checkpoint=lambda partial: write_json(partial, args.json),
                          tuned_jobs=args.jobs if args.jobs is not None else (8 if args.device == "cuda" else 1))
    render(report)
    path = write_json(report, args.json)
    print(f"summary written to {path}")
    return 0 if report.passed else 1
