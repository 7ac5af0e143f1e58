"""``bkbench warm SUITE``: compile the suite's Triton kernels in parallel before a timed run (bkbench.harness.warm)."""

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
    p.add_argument("--devices", default=None, metavar="0,1", help="GPU ids to spread the processes over")
    p.add_argument("--jobs", type=int, default=None, help="processes at a time (default: this host's cores minus one)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="per case (default: the case's timeout, at least 300 s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bkbench.harness.cli.run import _devices
    from bkbench.harness.console import make_console
    from bkbench.harness.runner import resolve_device, selected_cases
    from bkbench.harness.warm import default_jobs, kernels, warm

    console = make_console()
    dev = resolve_device(args.device)
    cases = selected_cases(args.suite, dev, groups=args.group, plugins=args.plugin, impls=args.impl,
                           skip_impls=args.skip_impl, missing=args.missing, db=args.db,
                           retry=args.retry)
    n_kernels = len(kernels(cases))
    jobs = min(args.jobs or default_jobs(n_kernels), max(1, n_kernels))
    console.print(f"warm {args.suite} on {dev}: {len(cases)} cases of {n_kernels} distinct kernels to compile, "
                  f"{jobs} processes")
    results = warm(cases, jobs=jobs, devices=_devices(args.devices) if args.devices else None, timeout_s=args.timeout,
                   plugins=args.plugin,
                   on_done=lambda r: console.print(f"  {r.status:8s} {r.seconds:6.1f} s  {r.impl} {r.mode} "
                                                   f"{r.case_key} {r.detail[:200]}"))
    bad = [r for r in results if r.status not in ("ok", "skipped")]
    console.print(f"warm: {len(results) - len(bad)} of {len(results)} done without error")
    return 0
