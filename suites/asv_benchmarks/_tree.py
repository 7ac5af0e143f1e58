"""Load bkbench's measuring modules from the working tree that holds this asv suite (not from the installed,
benchmarked commit), so every commit in the history is measured by the same code."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # <repo>/suites/asv_benchmarks/_tree.py -> <repo>


def load(name: str) -> types.ModuleType:
    """``<repo>/bkbench/harness/<name>.py`` as module ``_bkbench_tree_<name>`` (the name benchcase.tree_module uses)."""
    modname = f"_bkbench_tree_{name}"
    if modname in sys.modules:
        return sys.modules[modname]
    path = ROOT / "bkbench" / "harness" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"{path} not found: the asv suite needs the working tree's bkbench/harness/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod
