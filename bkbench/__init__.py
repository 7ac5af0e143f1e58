"""bkbench: benchmark, correctness gate and autotuning harness for the BK-core
(the diagonal of a tridiagonal resolvent, G_i = ((T - zI)^-1)_ii).

The library a model imports is :func:`bk_core` (also the ``bkbench::bk_core`` PyTorch operator under
``torch.compile``), :func:`bk_core_ex`, :func:`checked` and the registry. Importing it changes no process-wide
setting: Triton kernels on a machine without a GPU run only where the caller set ``TRITON_INTERPRET=1`` before
importing (the ``bkbench`` command line and the tests do).

The implementations live in the repository's top-level ``kernels/`` folder (families ``bk``, ``ssm``,
``attention``) and import as ``bkbench.kernels``: an installed package holds them at ``bkbench/kernels``
(pyproject's ``package-dir``); in a source checkout run without installing (``PYTHONPATH=<checkout>``), the name
is bound to the folder beside this package when ``bkbench`` is imported (``bkbench/_source_tree.py``).
"""

from bkbench import _source_tree  # noqa: F401  (binds bkbench.kernels in a source checkout)
from bkbench.api import bk_core, bk_core_ex, checked
from bkbench.registry import Implementation, Registry, default_registry, implementations, register
from bkbench.validate import NonFiniteResultError

__all__ = [
    "Implementation",
    "NonFiniteResultError",
    "Registry",
    "bk_core",
    "bk_core_ex",
    "checked",
    "default_registry",
    "implementations",
    "register",
]
__version__ = "0.1.0"
