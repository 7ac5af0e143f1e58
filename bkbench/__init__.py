"""bkbench: benchmark, correctness gate and autotuning harness for the BK-core
(the diagonal of a tridiagonal resolvent, G_i = ((T - zI)^-1)_ii)."""

from bkbench.api import bk_core
from bkbench.registry import Implementation, Registry, default_registry, implementations, register
from bkbench.validate import NonFiniteResultError

__all__ = [
    "Implementation",
    "NonFiniteResultError",
    "Registry",
    "bk_core",
    "default_registry",
    "implementations",
    "register",
]
__version__ = "0.1.0"
