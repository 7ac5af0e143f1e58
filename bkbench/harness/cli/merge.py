"""``bkbench merge SRC.db ... --into DST.db``: copy results databases made elsewhere into one (docs/cluster.md)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="copy the runs and rows of results databases into one (deduplicated)",
                       description="Copy every run and row of SRC databases into DST (created if missing). A run "
                                   "is the same run in every copy; a row already in DST is skipped; a row that "
                                   "differs from DST's row of the same run and case is reported and not copied. "
                                   "Merging twice changes nothing.")
    p.add_argument("sources", nargs="+", metavar="SRC.db", help="databases to copy from (read-only)")
    p.add_argument("--into", required=True, metavar="DST.db", help="database to copy into")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bkbench.store import Store

    for src in args.sources:
        if not Path(src).is_file():
            raise ValueError(f"SRC: {src} does not exist")
    conflicts = []
    with Store(args.into) as dst:
        for src in args.sources:
            rep = dst.merge_from(src)
            print(f"{src}: {rep.runs_added} run(s) and {rep.rows_added} row(s) added, {rep.rows_same} identical "
                  f"row(s) already in {args.into}, {len(rep.conflicts)} conflict(s)")
            conflicts += rep.conflicts
    for c in conflicts:
        print(f"conflict: run {c['run_id']} ({c['run_uid']}) case {c['case_id']}: {c['source']} holds a different "
              f"row; {args.into} keeps its own", file=sys.stderr)
    return 1 if conflicts else 0
