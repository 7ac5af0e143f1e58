"""pytest-benchmark suite (docs/pytest-benchmark.md).

Plain ``pytest`` runs only the tests: the benchmarks in this directory are deselected unless benchmarks are
asked for with ``--benchmark-only`` (or ``--benchmark-enable``, or ``BKBENCH_PYTEST_BENCHMARKS=1``)::

    pytest tests/benchmarks --benchmark-only -p no:xdist --benchmark-json=results/bench.json

(pytest-benchmark refuses ``--benchmark-skip`` together with ``--benchmark-only``, so the default cannot be
expressed as an addopts flag; this hook does it instead.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent


def _benchmarks_requested(config: pytest.Config) -> bool:
    opt = config.getoption
    return bool(
        opt("benchmark_only", default=False)
        or opt("benchmark_enable", default=False)
        or os.environ.get("BKBENCH_PYTEST_BENCHMARKS", "0") not in ("", "0")
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _benchmarks_requested(config):
        return
    keep, drop = [], []
    for item in items:
        (drop if BENCH_DIR in Path(str(item.path)).resolve().parents else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

