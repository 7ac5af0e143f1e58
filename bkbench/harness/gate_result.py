"""One row of the correctness gate: :class:`GateResult`.

The BK-core battery (:mod:`bkbench.harness.gate`), the baseline battery (:mod:`bkbench.harness.baselines.check`) and
the checks an implementation's record adds (``extra_checks``, e.g. :mod:`bkbench.harness.gate_tuned`) all return these
rows, so ``bkbench gate`` shows them in one table. This module imports nothing of bkbench: every one of them imports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GateResult:
    impl: str
    case: str
    key: str
    check: str  # "value", "grad", or an anti-cheat check (bkbench/harness/anticheat.py): "mutation", "freshness", ...
    status: str  # "pass", "fail", "skip"
    error: float | None = None
    tolerance: float | None = None
    detail: str = ""
    seconds: float = 0.0
