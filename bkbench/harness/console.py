"""One place that builds the rich console: wide enough for tables when output is a file or a CI log."""

from __future__ import annotations

import shutil
import sys

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(160, shutil.get_terminal_size((160, 40)).columns)
    return Console(stderr=stderr, width=width)
