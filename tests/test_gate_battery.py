"""Every registered BK-core implementation passes the gate battery (the same battery `bkbench gate` runs)."""

import pytest

from bkbench.harness.gate import battery, run_gate
from bkbench.registry import default_registry
from tests.triton_devices import skip_triton_on_cpu

BK = default_registry().names("bk")


def test_no_kernel_module_fails_to_import():
    assert default_registry().failures == []


def test_required_implementations_registered():
    for name in ("naive_loop", "thomas", "assoc_scan"):
        assert name in BK


@pytest.mark.parametrize("impl", BK)
def test_gate_battery(impl, device):
    skip_triton_on_cpu(impl, device)
    report = run_gate(impls=[impl], device=device, seeds=(0, 1))
    bad = [f"{r.case} [{r.key}] ({r.check}): {r.detail}" for r in report.failures]
    assert not bad, "\n".join(bad)
    ran = [r for r in report.results if r.status == "pass"]
    assert ran, f"{impl} passed no case at all: every case was skipped"


def test_battery_covers_the_hard_cases():
    cases = battery()
    names = " ".join(c.name for c in cases)
    for must in ("N=1", "N=2", "N=3", "odd N", "complex a", "zero couplings", "near-real", "N=65536",
                 "float64", "non-contiguous", "negative couplings", "per-chain z", "grad"):
        assert must in names, must
    assert any(c.problem.n >= 65536 for c in cases)
    assert not any(c.heavy for c in battery(quick=True))
