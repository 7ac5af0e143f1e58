"""BK-core implementations and baselines: one module per implementation, file name = registry name.

Every module here is imported by ``bkbench.registry.Registry.discover_package("kernels")`` and scanned for
functions decorated with ``bkbench.register``. Modules whose name starts with ``_`` hold shared helpers.
"""

import os as _os

import torch as _torch

# Triton kernels on a machine without a GPU run in Triton's CPU interpreter (small sizes only). Triton reads
# this variable when a kernel is decorated, so it must be set before any kernel module is imported.
if not _torch.cuda.is_available():
    _os.environ.setdefault("TRITON_INTERPRET", "1")
