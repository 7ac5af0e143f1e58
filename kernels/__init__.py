"""BK-core implementations and baselines, by family: ``bk/`` (the BK-core), ``ssm/`` (SSM and linear-attention
baselines), ``attention/`` (attention baselines). One module per implementation (file name = registry name for the
BK-core); modules whose name starts with ``_`` hold shared helpers.

Installed, this folder is the package ``bkbench.kernels`` (pyproject's ``package-dir``); in a source checkout
``import bkbench`` binds that name to it (``bkbench/_source_tree.py``). There is no top-level ``kernels`` package.
``bkbench.registry.Registry.discover_package("bkbench.kernels")`` imports every module here (recursively) and
scans it for functions decorated with ``bkbench.register``. Triton kernels read ``TRITON_INTERPRET`` when they are
defined: a program that wants the CPU interpreter sets it before the first kernel module is imported (the
``bkbench`` command line and the tests do; the library does not).
"""
