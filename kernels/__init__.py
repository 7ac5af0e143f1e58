"""BK-core implementations and baselines: one module per implementation, file name = registry name.

Every module here is imported by ``bkbench.registry.Registry.discover_package("kernels")`` and scanned for
functions decorated with ``bkbench.register``. Modules whose name starts with ``_`` hold shared helpers.
Triton kernels read ``TRITON_INTERPRET`` when they are defined: a program that wants the CPU interpreter sets it
before the first kernel module is imported (the ``bkbench`` command line and the tests do; the library does not).
"""
