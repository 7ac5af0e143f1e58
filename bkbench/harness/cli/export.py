"""``bkbench export``: the results store as CSV (one tidy row per case, joined with its run's header)."""

from __future__ import annotations

import argparse
import os
import sys

from bkbench.store import Store, default_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export results to CSV (all runs, or --run / --latest)")
    p.add_argument("--db", default=None, help=f"results database (default $BKBENCH_DB or {default_path()})")
    p.add_argument("--out", default="-", help="CSV file to write (default: standard output)")
    p.add_argument("--run", type=int, action="append", default=None, help="only this run id (repeatable)")
    p.add_argument("--latest", action="store_true", help="only the latest run (of --suite, if given)")
    p.add_argument("--suite", default=None, help="only runs of this suite")
    p.add_argument("--status", action="append", default=None, help="only rows with this status (repeatable)")
    p.add_argument("--no-samples", action="store_true", help="drop the raw timing samples column")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.db or default_path()
    from pathlib import Path

    if not Path(path).exists():
        raise ValueError(f"--db: {path} does not exist; run `bkbench run quick --db {path}` first")
    with Store(path) as store:
        runs = store.runs()
        if args.suite:
            runs = [r for r in runs if r["suite"] == args.suite]
        ids = [r["id"] for r in runs]
        if args.run:
            missing = set(args.run) - set(ids)
            if missing:
                raise ValueError(f"--run: no run {sorted(missing)} in {path} (runs: {ids})")
            ids = list(args.run)
        if args.latest:
            ids = ids[-1:]
        df = store.dataframe(ids)
    if args.status:
        df = df[df["status"].isin(args.status)]
    if args.no_samples:
        df = df.drop(columns=["samples_json"])
    if args.out == "-":
        try:
            df.to_csv(sys.stdout, index=False)
        except BrokenPipeError:  # e.g. `bkbench export | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
        print(f"{len(df)} rows -> {args.out}", file=sys.stderr)
    return 0
