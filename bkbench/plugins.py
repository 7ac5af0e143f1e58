"""Registries with plugins: the default registry plus the ``@register`` functions of user modules.

A plugin is an importable module name (``mypkg.my_kernels``) or the path of a ``.py`` file. The runner, its worker
processes, the warm-up and the gate all build their registry here, so a plugin means the same everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from bkbench.registry import Registry, default_registry


def registry_with(plugins: Sequence[str] = ()) -> Registry:
    """The default registry plus the ``@register`` functions of each plugin, in a copy (the process-wide default
    registry is left as it is). A plugin that cannot be imported or registers nothing is a ValueError naming it."""
    base = default_registry()
    if not plugins:
        return base
    reg = Registry()
    for rec in base.implementations(None):
        reg.add(rec)
    reg.failures = list(base.failures)
    for spec in plugins:
        if not reg.scan_module(_import_plugin(spec)):
            raise ValueError(f"plugin: {spec!r} registers no implementation (no @register function defined in it)")
    return reg


def _import_plugin(spec: str) -> ModuleType:
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"no file {path}")
            name = f"bkbench_plugin_{path.stem}"
            loader = importlib.util.spec_from_file_location(name, path)
            assert loader is not None and loader.loader is not None
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            loader.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except Exception as exc:
        raise ValueError(f"plugin: {spec!r} could not be imported ({type(exc).__name__}: {exc}); pass an "
                         "importable module name or the path of a .py file") from None
