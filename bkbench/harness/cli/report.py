"""``bkbench report``: render the HTML report (scaling fits, crossovers, roofline, energy, accuracy–speed
Pareto, sparsity, autotuning, run comparison, failures, environment) from results databases."""

from __future__ import annotations

import argparse
from pathlib import Path

from bkbench.store import default_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render the HTML report from results databases",
                       description="Render a self-contained HTML report (index.html + figures/ + data/) into --out.")
    p.add_argument("--db", action="append", metavar="PATH",
                   help=f"results database (repeatable; default {default_path()} or $BKBENCH_DB)")
    p.add_argument("--run", action="append", metavar="ID",
                   help="run to include (repeatable; ID, or DBSTEM:ID with several --db); default: every run")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                   help="add a per-case comparison of RUN_B against RUN_A (ratio with significance)")
    p.add_argument("--tuning", action="append", metavar="JSON", help="autotuner JSON file(s) to read (repeatable)")
    p.add_argument("--fit-min-n", type=float, default=None, help="fit power laws only over N >= this")
    p.add_argument("--fit-max-n", type=float, default=None, help="fit power laws only over N <= this")
    p.add_argument("--reps", type=int, default=1000, help="bootstrap resamples for intervals (default 1000)")
    p.add_argument("--embed", action="store_true", help="embed figures in index.html instead of figures/*.png")
    p.add_argument("--title", default="bkbench report", help="page title")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bkbench.harness.report import build_report

    dbs = args.db or [str(default_path())]
    index = build_report(dbs, Path(args.out), runs=args.run, compare=tuple(args.compare) if args.compare else None,
                         tuning_files=args.tuning, fit_min_n=args.fit_min_n, fit_max_n=args.fit_max_n,
                         reps=args.reps, embed=args.embed, title=args.title)
    print(f"report: {index}")
    return 0
