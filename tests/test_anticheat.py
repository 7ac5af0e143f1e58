"""Anti-cheat checks of ``bkbench gate`` (issue 25): the cheating kernels of tests/gate_cheaters.py are each
rejected, naming the kernel and the check; clean kernels pass (every registered kernel also passes them in
tests/test_gate_battery.py, which runs the whole gate); the physical floor flags impossible times in the gate, in
suite rows (status ``implausible``) and is judged with the right slack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bkbench.harness import anticheat, metrics, plausibility
from bkbench.harness.gate import anticheat_results
from bkbench.harness.timing import Timing as TimingResult
from bkbench.harness.timing import summarize
from bkbench.plugins import registry_with
from bkbench.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
CHEATERS = ROOT / "tests" / "gate_cheaters.py"
# the checks that must fail for each planted cheater (others may fail too)
MUST_FAIL = {"cheat_memo": {"freshness"}, "cheat_mutate": {"mutation"},
             "cheat_precomputed": {"aliasing", "freshness", "speed"}}


@pytest.fixture(scope="module")
def reg() -> Registry:
    return registry_with([str(CHEATERS)])


def _failing(reg: Registry, name: str, device: str = "cpu") -> dict[str, str]:
    rows = anticheat_results(reg.get(name), device, seed=0)
    return {r.check: r.detail for r in rows if r.status == "fail"}


@pytest.mark.parametrize("name", sorted(MUST_FAIL))
def test_each_cheater_fails_its_check(reg: Registry, name: str) -> None:
    failing = _failing(reg, name)
    assert MUST_FAIL[name] <= set(failing), failing


@pytest.mark.parametrize("name", ["thomas", "assoc_scan"])
def test_clean_kernels_pass_every_check(reg: Registry, name: str) -> None:
    rows = anticheat_results(reg.get(name), "cpu", seed=3)
    assert {r.check: r.status for r in rows} == {"mutation": "pass", "aliasing": "pass", "determinism": "pass",
                                                 "freshness": "pass", "stream": "skip", "speed": "pass"}, rows
    assert "CUDA only" in next(r.detail for r in rows if r.check == "stream")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the side-stream cheater needs CUDA")
def test_side_stream_cheater_fails_on_cuda(reg: Registry) -> None:
    failing = _failing(reg, "cheat_stream", "cuda")
    assert "stream" in failing and "side stream" in failing["stream"], failing
    assert "stream" not in _failing(reg, "assoc_scan", "cuda")


def test_determinism_follows_the_record() -> None:
    """A kernel whose result varies in the last bits fails when it says deterministic (the default), passes
    when its record says deterministic=False."""
    from bkbench.kernels.bk.thomas import thomas

    reg = Registry()
    calls = {"n": 0}

    def jitter(a, k, z):
        calls["n"] += 1
        g = thomas(a, k, z)
        return g * (1 + 1e-7 * (calls["n"] % 2))

    reg.register("jitter_strict", exact=True, dtypes=(torch.float32,))(jitter)
    reg.register("jitter_declared", exact=True, dtypes=(torch.float32,), deterministic=False)(
        lambda a, k, z: jitter(a, k, z))
    strict = {r.check: r.status for r in anticheat.value_checks(reg.get("jitter_strict"), "cpu")}
    declared = {r.check: r.status for r in anticheat.value_checks(reg.get("jitter_declared"), "cpu")}
    assert strict["determinism"] == "fail" and declared["determinism"] == "pass"


def test_shares_memory() -> None:
    x = torch.zeros(10)
    assert anticheat.shares_memory(x[2:5], x[4:8]) and not anticheat.shares_memory(x[:4], x[4:])
    assert not anticheat.shares_memory(x, x.clone()) and not anticheat.shares_memory(x[:0], x)
    k = torch.tensor(2.0).expand(3, 4)  # a uniform coupling: stride 0, one element
    assert anticheat.shares_memory(k, k[1:2]) and not anticheat.shares_memory(k, x)


def test_cheaters_planted_in_kernels_fail_the_gate_cli(tmp_path: Path) -> None:
    """The issue's acceptance test: the cheaters dropped into kernels/ of a checkout are rejected by
    ``bkbench gate`` with the kernel and the check named; the clean kernel next to them passes."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "bkbench", repo / "bkbench", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "kernels" / "bk").mkdir(parents=True)
    for name in ("__init__.py", "bk/__init__.py", "bk/_pivot_common.py", "bk/thomas.py", "bk/assoc_scan.py"):
        shutil.copy(ROOT / "kernels" / name, repo / "kernels" / name)
    shutil.copy(CHEATERS, repo / "kernels" / "cheaters.py")
    out = tmp_path / "gate.json"
    env = {**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "400"}
    res = subprocess.run([sys.executable, "-m", "bkbench", "gate", "--device", "cpu", "--quick", "--seeds", "1",
                          "--impl", *MUST_FAIL, "thomas", "--json", str(out)],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    text = res.stdout + res.stderr
    assert res.returncode == 1, text[-3000:]
    data = json.loads(out.read_text())
    for name, checks in MUST_FAIL.items():
        for check in checks:
            case = anticheat.CASES[check]
            assert any(f.startswith(f"{name} :: {case} ({check}): ") for f in data["failures"]), (name, check)
            assert f"FAIL {name} :: {case}" in text, (name, check)
    assert not [f for f in data["failures"] if f.startswith("thomas ")], data["failures"]


def test_gate_plugin_errors_are_usage_errors(tmp_path: Path) -> None:
    for bad, msg in ((str(tmp_path / "nope.py"), "could not be imported"), ("json", "registers no implementation")):
        res = subprocess.run([sys.executable, "-m", "bkbench", "gate", "--plugin", bad, "--impl", "thomas"],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 2 and msg in res.stderr and "Traceback" not in res.stderr, res.stderr


# -- the physical floor ------------------------------------------------------------------------------------------
def test_floor_and_slack() -> None:
    assert plausibility.floor_seconds(1e9, 1000.0) == pytest.approx(1e-3)
    assert plausibility.floor_seconds(1e9, None) is None and plausibility.floor_seconds(0, 10.0) is None
    assert plausibility.implausible(1e-3, 1e9, 1000.0) is None
    assert plausibility.implausible(0.9e-3, 1e9, 1000.0) is None  # 111 % of copy speed: measurement noise
    why = plausibility.implausible(0.5e-3, 1e9, 1000.0)  # 200 %
    assert why and "implausible speed" in why and "physical floor" in why
    assert plausibility.implausible(0.5e-3, 1e9, 1000.0, slack=plausibility.CACHE_SLACK) is None
    assert plausibility.implausible(1e-6, 1e9, None) is None  # no bandwidth: never judged
    assert plausibility.slack_for("cold", 1e3, 1 << 30) == plausibility.FLOOR_SLACK
    assert plausibility.slack_for("warm", 1e3, 1 << 30) == plausibility.CACHE_SLACK
    assert plausibility.slack_for("cpu", 2e9, 1 << 30) == plausibility.FLOOR_SLACK
    f32 = plausibility.bk_forward_bytes(8, 1024, torch.float32, torch.float32, torch.complex64)
    assert f32 == 8 * 1024 * 4 + 8 * 1023 * 4 + 8 * 8 + 8 * 1024 * 8


def _timing(median: float, mode: str = "cold") -> TimingResult:
    return TimingResult(mode=mode, samples=[median] * 5, stats=summarize([median] * 5), converged=True, stop="ci",
                        warmup_calls=0, warmup_s=0.0, measure_s=5 * median)


def test_suite_row_status_implausible() -> None:
    """A suite row whose time beats the floor gets status implausible (never ok) with the reason."""
    model = metrics.WorkModel(ideal_bytes=64e6, flops=0.0, elements=4 << 20, tokens=4 << 20)
    fast = metrics.MetricContext(timing=_timing(1e-6), model=model, copy_bandwidth_gbs=3000.0, device="cuda")
    honest = metrics.MetricContext(timing=_timing(30e-6), model=model, copy_bandwidth_gbs=3000.0, device="cuda")
    unknown = metrics.MetricContext(timing=_timing(1e-6), model=model, copy_bandwidth_gbs=None, device="cuda")
    st = metrics.row_status(fast)
    assert st["status"] == "implausible" and "physical floor" in st["reason"]
    assert metrics.row_status(honest) == {"status": "ok", "reason": None}
    assert metrics.row_status(unknown)["status"] == "ok"
    assert metrics.compute(fast, ["plausibility"])["floor_s"] == pytest.approx(64e6 / 3000e9)
    from bkbench.store import STATUSES

    assert "implausible" in STATUSES


def test_a_gate_killed_midway_keeps_what_it_measured(tmp_path: Path) -> None:
    """The JSON summary is rewritten after each implementation: a gate killed while checking the second one
    (here a plugin kernel that kills its own process) leaves the first one's rows, marked incomplete and not
    passed."""
    plugin = tmp_path / "dies.py"
    plugin.write_text(
        "import os, signal\n"
        "from bkbench.registry import register\n"
        "@register('dies_when_called', kind='bk', exact=True, description='test fixture: kills its process')\n"
        "def dies_when_called(a, k, z):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    out = tmp_path / "gate.json"
    res = subprocess.run([sys.executable, "-m", "bkbench", "gate", "--device", "cpu", "--quick", "--seeds", "1",
                          "--no-anticheat", "--plugin", str(plugin), "--impl", "thomas", "dies_when_called",
                          "--json", str(out)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == -9, res.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["complete"] is False and data["passed"] is False
    rows = data["results"]
    assert rows and {r["impl"] for r in rows} == {"thomas"} and all(r["status"] != "fail" for r in rows)
