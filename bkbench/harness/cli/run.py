"""``bkbench run SUITE``: run a declarative suite into the results store (see docs/suites.md, docs/cluster.md)."""

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


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--slurm-option: {text!r} is not KEY=VALUE, e.g. qos=high")
    return key.strip(), value.strip()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a suite (quick, gpu, energy, or a path to a .toml) into the results store")
    p.add_argument("suite", help="suite name (bkbench list shows them) or path to a suite .toml file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to run (default auto: cuda if available, else cpu)")
    p.add_argument("--db", default=None, help=f"results database (default $BKBENCH_DB or {default_path()})")
    p.add_argument("--resume", action="store_true",
                   help="continue the latest run of this suite/device/shard: run only the cases it does not hold")
    p.add_argument("--devices", type=_devices, default=None,
                   help="GPU ids of this host to run on, one worker (or, with --executor local, one job) per GPU")
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
    p.add_argument("--log-dir", default=None,
                   help="where the workers' logs go, kept (default: a temporary folder, removed after the run "
                        "unless a case crashed or timed out)")
    w = p.add_argument_group("warm-up (compile every kernel before timing; docs/suites.md)")
    w.add_argument("--no-warm", action="store_true", help="skip the warm-up (kernels compile in the timed worker)")
    w.add_argument("--warm-jobs", type=int, default=None, metavar="N",
                   help="warm-up processes (default: this host's cores minus one)")
    e = p.add_argument_group("executors (docs/cluster.md)")
    e.add_argument("--executor", choices=("inline", "local", "slurm"), default="inline",
                   help="inline (default): workers of this process; local: jobs on this host, one per GPU at a "
                        "time; slurm: jobs on a SLURM cluster (both need `pip install 'bkbench[cluster]'`)")
    e.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="jobs to group the cases into (default: one per GPU for local, 1 for slurm)")
    e.add_argument("--jobs-dir", default=None, metavar="DIR",
                   help="where job folders go (default: <db stem>-jobs/ next to the database; on a cluster a "
                        "file system the nodes share)")
    e.add_argument("--cluster-config", default=None, metavar="TOML",
                   help="a TOML file whose [slurm] table gives the SLURM settings below (flags override it)")
    e.add_argument("--slurm-partition", default=None)
    e.add_argument("--slurm-gpus-per-job", type=int, default=None, metavar="N", help="default 1")
    e.add_argument("--slurm-time", type=int, default=None, metavar="MIN", help="time limit per job (default 120)")
    e.add_argument("--slurm-account", default=None)
    e.add_argument("--slurm-cpus-per-job", type=int, default=None, metavar="N", help="default 8 per GPU")
    e.add_argument("--slurm-mem-gb", type=float, default=None, metavar="GB")
    e.add_argument("--slurm-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch option, e.g. qos=high or constraint=h100 (repeatable)")
    e.add_argument("--slurm-setup", action="append", default=[], metavar="CMD",
                   help="a shell line run before each job, e.g. 'module load cuda' (repeatable)")
    p.set_defaults(func=run)


def _slurm(args: argparse.Namespace):  # -> bkbench.harness.executors.SlurmSettings | None
    from bkbench.harness.executors import slurm_settings

    if args.executor != "slurm":
        used = [f for f in ("slurm_partition", "slurm_gpus_per_job", "slurm_time", "slurm_account",
                            "slurm_cpus_per_job", "slurm_mem_gb", "cluster_config") if getattr(args, f) is not None]
        used += [f for f in ("slurm_option", "slurm_setup") if getattr(args, f)]
        if used:
            raise ValueError(f"--{used[0].replace('_', '-')}: SLURM settings need --executor slurm")
        return None
    return slurm_settings(args.cluster_config, partition=args.slurm_partition, gpus_per_job=args.slurm_gpus_per_job,
                          time_min=args.slurm_time, account=args.slurm_account, cpus_per_job=args.slurm_cpus_per_job,
                          mem_gb=args.slurm_mem_gb, options=dict(args.slurm_option), setup=list(args.slurm_setup))


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bkbench.harness.console import make_console
    from bkbench.harness.runner import resolve_device, run_suite, selected_cases
    from bkbench.harness.suites import estimate_seconds

    console = make_console()
    slurm = _slurm(args)
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
        if args.executor != "inline":
            from bkbench.harness.executors import group_into_jobs

            work = [c for c in cases if not c.skip_reason]
            groups = group_into_jobs(work, args.jobs or 1) if work else []
            console.print(f"--executor {args.executor}: {len(groups)} job(s) of "
                          f"{', '.join(str(len(g)) for g in groups)} case(s)")
            if slurm is not None:
                console.print(f"sbatch parameters per job: {slurm.parameters('bkbench-' + args.suite)}")
        return 0
    summary = run_suite(
        args.suite, device=args.device, db=args.db, resume=args.resume, devices=args.devices, shard_spec=args.shard,
        groups=args.group, plugins=args.plugin, timeout_s=args.timeout, label=args.label,
        progress=not args.no_progress, console=console, log_dir=args.log_dir, impls=args.impl,
        skip_impls=args.skip_impl, missing=args.missing, retry=args.retry, warm=not args.no_warm,
        warm_jobs=args.warm_jobs, executor=args.executor, jobs=args.jobs, jobs_dir=args.jobs_dir, slurm=slurm,
    )
    if summary.run_id == 0:  # --missing with nothing missing: no run was opened
        return 0
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items())) or "nothing to do"
    warm = f" (warm-up {summary.warm_s:.1f} s)" if summary.warm_s else ""
    console.print(
        f"run {summary.run_id}: {summary.executed} case(s) run now ({counts}); {summary.already_done} already stored; "
        f"{summary.total} in the plan; {summary.seconds:.1f} s{warm} -> {summary.db}"
    )
    for note in summary.notes:
        console.print(f"[yellow]note[/yellow]: {note}")
    for folder in summary.kept:
        console.print(f"kept for a look (a case crashed or timed out, or a job failed): {folder}")
    if summary.interrupted or summary.missing:
        what = "interrupted" if summary.interrupted else f"{summary.missing} case(s) not stored"
        console.print(f"[yellow]{what}[/yellow]: continue with the same command plus --resume")
        return 130 if summary.interrupted else 1
    bad = [r for r in summary.problems if r["status"] in ("incorrect", "crash", "timeout", "implausible")]
    return 1 if (args.strict and bad) else 0
