"""Bug 3 of issue 25: without triton installed, ``bkbench list`` and ``bkbench gate --quick --device cpu`` pass
and list the Triton kernels as unavailable (with the reason), instead of exiting 1 on an import failure.

The CLI runs in a subprocess whose ``sitecustomize`` (first on PYTHONPATH) installs a ``sys.meta_path`` finder
that refuses ``triton`` and its submodules, exactly as on a machine where triton is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BLOCKER = '''
import importlib.abc
import sys


class _NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _NoTriton())
'''

TRITON_KERNELS = ("triton_fused", "lut_green_triton", "lns_triton")


def _cli(tmp_path: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "COLUMNS": "250"}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-m", "bkbench", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_blocker_really_hides_triton(tmp_path: Path) -> None:
    res = _cli(tmp_path, "env")
    assert res.returncode == 0, res.stderr
    probe = subprocess.run([sys.executable, "-c", "import triton"], env={
        **os.environ, "PYTHONPATH": str(tmp_path / "site")}, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by the test" in probe.stderr


def test_list_without_triton(tmp_path: Path) -> None:
    res = _cli(tmp_path, "list", "--kind", "bk")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "import failure" not in out, out
    for name in TRITON_KERNELS:
        line = next((ln for ln in out.splitlines() if ln.strip("│ ").startswith(name)), "")
        assert "triton is not installed" in line, f"{name}: {line!r}\n{out}"


@pytest.mark.slow
def test_quick_cpu_gate_without_triton(tmp_path: Path) -> None:
    res = _cli(tmp_path, "gate", "--quick", "--device", "cpu", "--seeds", "1", "--json", str(tmp_path / "g.json"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "IMPORT FAILURE" not in out and "gate PASSED" in out, out[-4000:]
