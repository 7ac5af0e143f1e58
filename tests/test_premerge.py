"""``bkbench premerge``: a planted 2x slowdown is SLOW and fails naming the kernel; a planted wrong result fails on
correctness; a planted memo (no work) is IMPLAUSIBLE; an innocuous change is SAME and passes; the FAST / SLOW /
SAME / AMBIGUOUS verdicts follow the confidence interval of the paired ratios. Each test builds a throw-away git
repository (a copy of ``bkbench/`` plus a small ``kernels/`` package) under pytest's tmp_path, so the real
checkout is never touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bkbench.harness.premerge import _imports, changed_kernel_modules, parse_shape
from bkbench.harness.verdicts import coverage, judge, median_rank_interval

ROOT = Path(__file__).resolve().parent.parent

# A kernel that wraps thomas; REPEAT and SCALE are the knobs the tests turn.
TOY = '''"""toy: thomas, REPEAT times, scaled by SCALE (a premerge test fixture)."""

import torch

from bkbench.registry import register
from bkbench.kernels.bk.thomas import thomas as _thomas

REPEAT = 1
SCALE = 1.0
MEMO = False
_SEEN = {}


@register("toy", kind="bk", exact=True, devices=("cpu",),
          dtypes=(torch.float32, torch.float64, torch.complex64, torch.complex128))
def toy(a, k, z):
    key = (a.data_ptr(), k.data_ptr(), z.data_ptr(), tuple(a.shape))
    if MEMO and key in _SEEN:
        return _SEEN[key]
    g = _SEEN[key] = _thomas(a, k, z)
    for _ in range(REPEAT - 1):
        g = _thomas(a, k, z)
    return g * SCALE if SCALE != 1.0 else g
'''


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo on branch main: bkbench/ (copied from this checkout) + kernels thomas and toy, committed."""
    r = tmp_path / "repo"
    shutil.copytree(ROOT / "bkbench", r / "bkbench", ignore=shutil.ignore_patterns("__pycache__"))
    (r / "kernels" / "bk").mkdir(parents=True)
    for name in ("__init__.py", "bk/__init__.py", "bk/_pivot_common.py", "bk/thomas.py"):
        shutil.copy(ROOT / "kernels" / name, r / "kernels" / name)
    (r / "kernels" / "toy.py").write_text(TOY)
    _git(r, "init", "-q", "-b", "main")
    _git(r, "config", "user.email", "premerge-test@example.invalid")
    _git(r, "config", "user.name", "premerge test")
    _git(r, "add", ".")
    _git(r, "commit", "-q", "-m", "base")
    return r


def _premerge(repo: Path, tmp_path: Path, *extra: str) -> tuple[int, str, dict]:
    out = tmp_path / "premerge.json"
    env = {**os.environ, "PYTHONPATH": str(repo), "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "bkbench", "premerge", "--base", "main", "--device", "cpu", "--shape", "4x400",
           "--seeds", "1", "--json", str(out), *extra]
    res = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    text = res.stdout + res.stderr
    return res.returncode, text, json.loads(out.read_text()) if out.is_file() else {}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_planted_slowdown_fails_and_names_the_kernel(repo: Path, tmp_path: Path) -> None:
    _edit(repo / "kernels" / "toy.py", "REPEAT = 1", "REPEAT = 2")
    rc, text, rep = _premerge(repo, tmp_path)
    assert rc == 1, text
    assert rep["gate_passed"] is True, text  # still correct: only slower
    assert rep["changed_impls"] == ["toy"], text  # thomas did not change and is not timed
    (comp,) = rep["comparisons"]
    assert comp["impl"] == "toy" and comp["status"] == "slow", text
    assert comp["ratio"] > 1.5 and comp["ratio_ci_low"] > 1.25, text
    assert "premerge FAILED" in text and "regression in toy" in text and "SLOW" in text, text


def test_planted_wrong_result_fails_on_correctness(repo: Path, tmp_path: Path) -> None:
    _edit(repo / "kernels" / "toy.py", "SCALE = 1.0", "SCALE = 1.01")
    rc, text, rep = _premerge(repo, tmp_path)
    assert rc == 1, text
    assert rep["gate_passed"] is False, text
    assert rep["gate_failed_impls"] == ["toy"], text
    assert "correctness failure in toy" in text, text
    assert not [c for c in rep["comparisons"] if c["status"] == "slow"], text


def test_innocuous_change_passes(repo: Path, tmp_path: Path) -> None:
    _edit(repo / "kernels" / "toy.py", "REPEAT = 1", "REPEAT = 1  # an innocuous edit")
    rc, text, rep = _premerge(repo, tmp_path)
    assert rc == 0, text
    (comp,) = rep["comparisons"]
    assert comp["impl"] == "toy" and comp["status"] in ("same", "fast"), text
    assert comp["ratio_ci_low"] <= comp["ratio"] <= comp["ratio_ci_high"], text
    assert "premerge PASSED" in text, text


def test_planted_memo_is_implausible(repo: Path, tmp_path: Path) -> None:
    """A kernel that returns its earlier answer for the same buffers does no work when timed: its time is far below
    the physical floor, and premerge fails on it (the gate's anti-cheat checks fail it too)."""
    _edit(repo / "kernels" / "toy.py", "MEMO = False", "MEMO = True")
    # 8.4 MB of compulsory traffic: its floor / 8 is ~20 us at 50 GB/s, four times the memo's ~5 us per call (at
    # 64 x 1024 the two were within 15 % of each other on the development CPU, and the verdict flipped between runs)
    rc, text, rep = _premerge(repo, tmp_path, "--shape", "256x2048")
    assert rc == 1, text
    (comp,) = rep["comparisons"]
    assert comp["status"] == "implausible" and "physical floor" in comp["detail"], text
    assert "toy at B256_N2048_f32_zi1: implausible speed" in text, text
    assert rep["gate_passed"] is False and "toy" in rep["gate_failed_impls"], text


def test_unknown_base_is_a_usage_error(repo: Path, tmp_path: Path) -> None:
    rc, text, _ = _premerge(repo, tmp_path, "--base", "no-such-branch")
    assert rc == 2 and "base: 'no-such-branch' is not a commit" in text, text


def test_helper_change_selects_its_dependents() -> None:
    deps = _imports(ROOT / "kernels" / "bk" / "thomas.py", here="bkbench.kernels.bk")
    assert "bkbench.kernels.bk._pivot_common" in deps
    affected = changed_kernel_modules(ROOT, ["kernels/bk/_pivot_common.py", "README.md"])
    bk = "bkbench.kernels.bk."
    assert {bk + "_pivot_common", bk + "thomas", bk + "naive_loop", bk + "assoc_scan"} <= affected
    assert changed_kernel_modules(ROOT, ["kernels/ssm/__init__.py"]) == {
        m for m in changed_kernel_modules(ROOT, ["kernels/__init__.py"]) if m.startswith("bkbench.kernels.ssm.")}
    assert changed_kernel_modules(ROOT, ["kernels/bk/thomas.py"]) >= {"bkbench.kernels.bk.thomas"}
    assert changed_kernel_modules(ROOT, ["bkbench/harness/gate.py", "docs/x.md"]) == set()
    everything = changed_kernel_modules(ROOT, ["kernels/__init__.py"])
    assert {"bkbench.kernels.bk.thomas", "bkbench.kernels.bk.naive_loop"} <= everything


def test_verdicts() -> None:
    assert median_rank_interval(15) == (4, 12) and coverage(15, 4) >= 0.95
    assert median_rank_interval(3) == (1, 3)  # too few rounds for 95 %: the whole range
    noise = [0.97, 1.0, 1.02, 0.99, 1.03, 1.01, 0.98, 1.0, 1.04, 0.96, 1.0, 1.02, 0.99, 1.01, 1.0]
    assert judge(noise, 0.1).status == "same"
    assert judge([2 * r for r in noise], 0.25).status == "slow"
    assert judge([r / 2 for r in noise], 0.25).status == "fast"
    spread = [0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.15, 1.05, 1.25, 1.35, 0.95, 1.22, 1.18, 1.28, 1.12]
    v = judge(spread, 0.25)
    assert v.status == "ambiguous" and v.low < 1.25 < v.high, v
    # a few rounds hit by a burst of load do not move the verdict
    assert judge(noise[:12] + [3.0, 4.0, 5.0], 0.25).status == "same"


def test_parse_shape() -> None:
    assert parse_shape("8x1024") == (8, 1024, "float32")
    assert parse_shape("2X3:float64") == (2, 3, "float64")
    for bad in ("8", "0x4", "8x4:int8", "axb"):
        with pytest.raises(ValueError, match="shape"):
            parse_shape(bad)


def test_worker_proc_requests_and_failures(tmp_path: Path) -> None:
    """premerge's timing worker over a tree (bkbench.harness.worker_protocol): hello names the tree's bkbench, a
    request it cannot answer is ``<label>: <error>``, a dead worker ``<label> worker exited with status <code>;
    <log>``."""
    from bkbench.harness.premerge import WorkerError, WorkerProc

    w = WorkerProc("head", ROOT, tmp_path, threads=1)
    try:
        assert Path(w.ask("hello")["bkbench"]) == (ROOT / "bkbench").resolve()
        with pytest.raises(WorkerError, match="^head: KeyError: 'bogus'"):
            w.ask("bogus")
        assert w.proc.proc is not None
        w.proc.proc.kill()
        w.proc.proc.wait()
        with pytest.raises(WorkerError, match=r"^head worker exited with status -9; "):
            w.ask("hello")
    finally:
        w.close()
    assert (tmp_path / "worker-head.log").is_file()
