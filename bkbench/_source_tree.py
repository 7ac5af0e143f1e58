"""Binds ``bkbench.kernels`` to the checkout's top-level ``kernels/`` folder in a source checkout.

An installed package holds the implementations at ``bkbench/kernels`` (pyproject's ``package-dir`` maps the
repository's ``kernels/`` there), so ``import kernels`` finds nothing after ``pip install .``. A source checkout run
without installing (``PYTHONPATH=<checkout>``, as the device scripts and ``.ci/run`` do) has no
``bkbench/kernels``: importing ``bkbench`` runs :func:`bind` once, which loads the folder's ``__init__`` (a
docstring) under that name; the kernel modules load when imported. Nothing happens when ``bkbench.kernels`` is
already importable from the package itself or already loaded.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACKAGE = "bkbench.kernels"


def bind() -> None:
    here = Path(__file__).resolve().parent
    init = here.parent / "kernels" / "__init__.py"
    if PACKAGE in sys.modules or (here / "kernels").exists() or not init.is_file():
        return
    spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    sys.modules["bkbench"].kernels = module  # as the import system does for a submodule it loads


bind()
