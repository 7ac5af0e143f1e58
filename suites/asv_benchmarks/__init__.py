"""asv benchmarks of bkbench (``benchmark_dir`` of ``asv.conf.json``); see docs/asv.md.

The measuring code (``bkbench/harness/benchcase.py``, ``bkbench/harness/benchtimer.py``, ``bkbench/harness/timing.py``)
is loaded by path from the working tree that holds this package (:mod:`._tree`), while ``bkbench`` and ``kernels`` are
imported from the environment, i.e. from the commit asv is benchmarking.
"""
