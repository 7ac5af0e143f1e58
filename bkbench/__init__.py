"""bkbench: benchmark, correctness gate and autotuning harness for the BK-core
(the diagonal of a tridiagonal resolvent, G_i = ((T - zI)^-1)_ii)."""

import os as _os

import torch as _torch

# Triton kernels on a machine without a GPU run in Triton's CPU interpreter (small sizes only). Triton reads
# this variable when a kernel is decorated, so it is decided here, before anything can import triton.
if not _torch.cuda.is_available():
    _os.environ.setdefault("TRITON_INTERPRET", "1")

from bkbench.api import bk_core  # noqa: E402
from bkbench.registry import Implementation, Registry, default_registry, implementations, register  # noqa: E402
from bkbench.validate import NonFiniteResultError  # noqa: E402

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
