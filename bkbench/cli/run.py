"""``bkbench run SUITE``: run a declarative suite into the results store (see docs/suites.md)."""

from __future__ import annotations

import argparse

from bkbench.store import RETRY_STATUSES, default_path


def _devices(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--devices: {text!r} is not a comma-separated list of GPU ids, e.g. 0,1"
        ) from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"--devices: {text!r} must list distinct GPU ids >= 0, e.g. 0,1")
    return ids


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a suite (quick, gpu, energy, or a path to a .toml) into the results store")
    p.add_argument("suite", help="suite name (bkbench list shows them) or path to a suite .toml file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to run (default auto: cuda if available, else cpu)")
    p.add_argument("--db", default=None, help=f"results database (default $BKBENCH_DB or {default_path()})")
    p.add_argument("--resume", action="store_true",
                   help="continue the latest run of this suite/device/shard: run only the cases it does not hold")
    p.add_argument("--devices", type=_devices, default=None,
                   help="GPU ids to shard cases across, one worker per GPU (e.g. 0,1)")
    p.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N (every N-th case)")
    p.add_argument("--group", action="append", default=None, help="run only this group of the suite (repeatable)")
    p.add_argument("--impl", action="append", default=None, metavar="NAME",
                   help="run only this implementation's cases (repeatable)")
    p.add_argument("--skip-impl", action="append", default=None, metavar="NAME",
                   help="leave this implementation's cases out (repeatable)")
    p.add_argument("--missing", action="store_true",
                   help="run only the cases no run of this suite/device in the database holds (any shard or "
                        "group; a timeout row does not count, so a longer --timeout retries it)")
    p.add_argument("--retry", action="append", default=[], choices=RETRY_STATUSES,
                   help="with --missing: a stored row of this status does not count either, so the case runs "
                        "again (e.g. incorrect after a fix; repeatable); the old rows are kept")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="also register the implementations of this importable module (repeatable)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="per-case timeout in seconds (overrides the suite's timeout_s)")
    p.add_argument("--label", default="", help="free-form label stored with the run")
    p.add_argument("--dry-run", action="store_true", help="print the plan (cases) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if any case is incorrect, implausibly fast, crashed or timed out")
    p.add_argument("--log-dir", default=None, help="where the workers' logs go (default: a temporary directory)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bkbench.console import make_console
    from bkbench.runner import resolve_device, run_suite, selected_cases
    from bkbench.suites import estimate_seconds

    console = make_console()
    if args.dry_run:
        dev = resolve_device(args.device, require=False)  # a GPU run can be planned on any machine
        cases = selected_cases(args.suite, dev, shard_spec=args.shard, groups=args.group, plugins=args.plugin,
                               impls=args.impl, skip_impls=args.skip_impl, missing=args.missing, db=args.db,
                               retry=args.retry)
        table = Table(title=f"{args.suite}: {len(cases)} cases, planning estimate ~{estimate_seconds(cases):.0f} s")
        for col in ("group", "impl", "kind", "case", "mode", "timing", "options", "note"):
            table.add_column(col)
        for c in cases:
            table.add_row(c.group, c.impl, c.kind, c.case_key, c.mode, c.timing, c.options_json if c.options else "",
                          c.skip_reason or "")
        console.print(table)
        return 0
    summary = run_suite(
        args.suite, device=args.device, db=args.db, resume=args.resume, devices=args.devices, shard_spec=args.shard,
        groups=args.group, plugins=args.plugin, timeout_s=args.timeout, label=args.label,
        progress=not args.no_progress, console=console, log_dir=args.log_dir, impls=args.impl,
        skip_impls=args.skip_impl, missing=args.missing, retry=args.retry,
    )
    if summary.run_id == 0:  # --missing with nothing missing: no run was opened
        return 0
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items())) or "nothing to do"
    console.print(
        f"run {summary.run_id}: {summary.executed} case(s) run now ({counts}); {summary.already_done} already stored; "
        f"{summary.total} in the plan; {summary.seconds:.1f} s -> {summary.db}"
    )
    if summary.interrupted:
        console.print("[yellow]interrupted[/yellow]: continue with the same command plus --resume")
        return 130
    bad = [r for r in summary.problems if r["status"] in ("incorrect", "crash", "timeout", "implausible")]
    return 1 if (args.strict and bad) else 0
