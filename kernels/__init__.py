"""BK-core implementations and baselines: one module per implementation, file name = registry name.

Every module here is imported by ``bkbench.registry.Registry.discover_package("kernels")`` and scanned for
functions decorated with ``bkbench.register``. Modules whose name starts with ``_`` hold shared helpers.
"""

# Importing bkbench first decides TRITON_INTERPRET (set to 1 on a machine without a GPU) before any kernel
# module imports triton.
import bkbench as _bkbench  # noqa: F401
