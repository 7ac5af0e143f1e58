"""``bkbench warm SUITE``: compile the suite's Triton kernels in parallel before a timed run (bkbench.warm)."""

from __future__ import annotations

import argparse

from bkbench.store import RETRY_STATUSES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("warm", help="compile a suite's kernels (Triton cache) in parallel processes before a timed "
                                    "run; measures and stores nothing")
    p.add_argument("suite", help="suite name or path to a suite .toml file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--db", default=None, help="results database that --missing reads")
    p.add_argument("--group", action="append", default=None, help="only this group (repeatable)")
    p.add_argument("--impl", action="append", default=None, metavar="NAME", help="only this implementation")
    p.add_argument("--skip-impl", action="append", default=None, metavar="NAME", help="leave this one out")
    p.add_argument("--missing", action="store_true", help="only the cases the database does not hold yet")
    p.add_argument("--retry", action="append", default=[], choices=RETRY_STATUSES,
                   help="with --missing: rows of this status count as not held (as in bkbench run)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    p.add_argument("--jobs", type=int, default=4, help="processes at a time (default 4)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per process (default 600 s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bkbench.console import make_console
    from bkbench.runner import resolve_device, selected_cases
    from bkbench.warm import representatives, warm

    console = make_console()
    dev = resolve_device(args.device)
    cases = selected_cases(args.suite, dev, groups=args.group, plugins=args.plugin, impls=args.impl,
                           skip_impls=args.skip_impl, missing=args.missing, db=args.db,
                           retry=args.retry)
    reps = representatives(cases)
    console.print(f"warm {args.suite} on {dev}: {len(cases)} cases -> {len(reps)} distinct kernels to compile, "
                  f"{args.jobs} at a time")
    results = warm(cases, jobs=args.jobs, timeout_s=args.timeout, plugins=args.plugin,
                   on_done=lambda r: console.print(f"  {r.status:8s} {r.seconds:6.1f} s  {r.impl} {r.mode} "
                                                   f"{r.case_key} {r.detail[:200]}"))
    bad = [r for r in results if r.status in ("error", "timeout")]
    console.print(f"warm: {len(results) - len(bad)} of {len(results)} done without error")
    return 0
