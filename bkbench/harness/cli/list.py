"""``bkbench list``: implementations (with availability here) and suites."""

from __future__ import annotations

import argparse

from bkbench.registry import default_registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list implementations (and why any is unavailable here) and suites")
    p.add_argument("--kind", choices=("bk", "ssm", "attention"), help="only this kind")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bkbench.harness.console import make_console

    reg = default_registry()
    table = Table(title="implementations")
    for col in ("name", "kind", "exact", "devices", "dtypes", "grad", "available here", "description"):
        table.add_column(col)
    for rec in reg.implementations(args.kind):
        reason = rec.unavailable_reason()
        table.add_row(
            rec.name + (" (baseline)" if rec.baseline else ""),
            rec.kind,
            "yes" if rec.exact else "approx",
            ",".join(rec.devices),
            ",".join(str(d).replace("torch.", "") for d in rec.dtypes),
            "yes" if rec.differentiable else "no",
            "[green]yes[/green]" if reason is None else f"[red]no[/red]: {reason}",
            rec.description,
        )
    console = make_console()
    console.print(table)
    for f in reg.failures:
        console.print(f"[bold red]import failure[/bold red] {f.module}: {f.error}")
    try:
        from bkbench.harness.suites import list_suites
    except ImportError:
        return 1 if reg.failures else 0
    suites = Table(title="suites")
    suites.add_column("name")
    suites.add_column("cases")
    suites.add_column("description")
    for s in list_suites():
        suites.add_row(s.name, str(s.case_count), s.description)
    console.print(suites)
    return 1 if reg.failures else 0
