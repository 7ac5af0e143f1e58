"""Command-line interface: ``bkbench <command>`` == ``python -m bkbench <command>``.

Each sub-command lives in its own module of this package and exposes ``add_parser(subparsers)``, which
registers an ``argparse`` sub-parser whose ``func(args) -> int`` default runs it. Modules are discovered, so
adding a command is adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bkbench",
        description="Benchmark, correctness gate and autotuner for the BK-core (tridiagonal resolvent diagonal).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        add = getattr(module, "add_parser", None)
        if add is not None:
            add(sub)
    return parser


def use_interpreter_without_gpu() -> None:
    """The command line runs Triton kernels in Triton's CPU interpreter on a machine without a GPU (small sizes:
    the kernels declare what they take there). Set before any kernel module is imported; an explicit
    ``TRITON_INTERPRET`` is kept. The library itself never sets it."""
    import os

    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def main(argv: Sequence[str] | None = None) -> int:
    use_interpreter_without_gpu()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input: a clear message, no traceback
        print(f"bkbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
