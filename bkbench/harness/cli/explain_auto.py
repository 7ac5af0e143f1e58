"""``bkbench explain-auto``: which implementation ``impl="auto"`` picks for a problem, and why."""

from __future__ import annotations

import argparse

DTYPES = ("float32", "float64", "bfloat16", "float16")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain-auto", help="show which implementation impl='auto' picks for a shape, and why")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--n", type=int, required=True, help="chain length N")
    p.add_argument("--batch", type=int, required=True, help="number of chains B (product of leading dims)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="input dtype (half types compute in float32)")
    p.add_argument("--coupling", choices=("k", "scalar"), default="k",
                   help="per-position couplings or one scalar (affects triton_fused's tuned config)")
    p.add_argument("--db", default=None, help="a results store to read (default: $BKBENCH_DB if set, else none)")
    p.add_argument("--gpu", default=None, help="explain for this GPU name (default: the current CUDA device)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from rich.table import Table

    from bkbench import dispatch
    from bkbench.harness.console import make_console
    from bkbench.registry import default_registry

    if args.n < 1 or args.batch < 1:
        raise ValueError(f"--n, --batch: need positive integers, got n={args.n}, batch={args.batch}")
    dtype = getattr(torch, args.dtype)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    reg = default_registry()
    ev = dispatch.explain(args.device, compute, args.batch, args.n, reg,
                          store_path=Path(args.db) if args.db else None, gpu=args.gpu)
    console = make_console()
    console.print(f"[bold]impl='auto'[/bold] for device={args.device} gpu={ev.gpu or '-'} dtype={args.dtype} "
                  f"(computes in {str(compute).replace('torch.', '')}) B={args.batch} N={args.n}")
    console.print(f"bucket key: {ev.key}")
    for s in ev.sources:
        console.print(f"  source: {s}")
    table = Table(title="candidates (BK-core implementations)")
    for col in ("impl", "usable", "measured ms", "incorrect rows", "source"):
        table.add_column(col)
    for name, c in ev.candidates.items():
        ms = c.get("ms")
        table.add_row(
            name,
            "yes" if c.get("usable") is None else f"no: {c['usable']}",
            f"{ms:.4g}" if ms is not None else "-",
            "yes (excluded)" if c.get("incorrect") else ("no" if ms is not None else "-"),
            c.get("source", "-"),
        )
    console.print(table)
    assert ev.choice is not None
    console.print(f"[bold green]pick: {ev.choice.impl}[/bold green] — {ev.choice.reason}")
    rec = reg.get(ev.choice.impl)
    tables = rec.load_tuner()  # the pick's tuned tables (bkbench.registry.Implementation.tuner), if it has them
    if tables is not None:
        if args.gpu:
            gpu = tables.known_gpu(args.gpu) or tables.GpuId(args.gpu, 0, 0, "?")
        else:
            gpu = tables.gpu_id() if args.device == "cuda" and torch.cuda.is_available() else tables.INTERPRETER
        found = tables.explain_for(gpu, dtype, args.coupling == "scalar", args.batch, args.n)
        console.print(f"{rec.name} config on {gpu.label()} for {found.key}: {found.source}")
        console.print(f"  forward {found.fwd.to_dict()}")
        console.print(f"  backward {found.bwd.to_dict()}")
        if gpu != tables.INTERPRETER and not found.tuned_here:
            console.print(f"  not tuned on this GPU: `bkbench tune --shapes {args.batch}x{args.n}` measures it, or "
                          "bkbench.harness.first_use_tuning.enable(budget_s=...) tunes it at the first call (cached)")
    return 0
