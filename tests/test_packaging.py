"""Packaging: the repository's kernels/ and suites/ install under the project's name, never as top-level packages.

pyproject lists the packages by hand (``bkbench.kernels`` is the ``kernels/`` folder, ``bkbench.suite_files`` the
``suites/`` folder); these tests keep that list whole and check a built wheel: after a non-editable install,
``import kernels`` fails while the registry finds every implementation the source tree has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _source_packages() -> set[str]:
    """Import names of every package folder of the source tree, as pyproject maps them."""
    out = set()
    for base, name in (("bkbench", "bkbench"), ("kernels", "bkbench.kernels")):
        for init in (ROOT / base).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / base)
            out.add(".".join((name, *rel.parts)))
    out.add("bkbench.suite_files")  # suites/ itself; its asv_benchmarks are not installed
    return out


def test_pyproject_lists_every_package_and_maps_the_top_level_folders():
    tool = _pyproject()["tool"]["setuptools"]
    assert set(tool["packages"]) == _source_packages()
    assert tool["package-dir"] == {"bkbench.kernels": "kernels", "bkbench.suite_files": "suites"}
    assert not any(p.split(".")[0] in ("kernels", "suites") for p in tool["packages"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel and installed (no dependencies) into a target folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy of what the build reads: pip builds in the source folder (build/, egg-info)
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("bkbench", "kernels", "suites"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
                            str(src)], capture_output=True, text=True, timeout=600, cwd=tmp)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("bkbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"bkbench", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    for path in ("bkbench/kernels/bk/triton_fused.py", "bkbench/kernels/ssm/__init__.py",
                 "bkbench/kernels/attention/attention_sdpa.py", "bkbench/suite_files/quick.toml",
                 "bkbench/harness/report/templates/report.html.j2"):
        assert path in names, path
    assert any(n.startswith("bkbench/kernels/bk/data/triton_fused_") for n in names)
    assert not any("asv_benchmarks" in n for n in names)
    target = tmp / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return target


def test_installed_package_has_no_top_level_kernels_and_finds_every_implementation(installed, tmp_path):
    code = (
        "import importlib.util, json, bkbench\n"
        "from bkbench.registry import default_registry\n"
        "from bkbench.harness.suites import load_suite, suites_dir\n"
        "reg = default_registry()\n"
        "print(json.dumps({'bkbench': bkbench.__file__, 'kernels': importlib.util.find_spec('kernels') is not None,\n"
        "    'suites': importlib.util.find_spec('suites') is not None,\n"
        "    'impls': sorted(r.name for r in reg.implementations(None)), 'failures': len(reg.failures),\n"
        "    'suites_dir': str(suites_dir()), 'quick': load_suite('quick').name}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["bkbench"].startswith(str(installed))  # the installed copy, not this checkout
    assert got["kernels"] is False and got["suites"] is False
    assert got["failures"] == 0 and got["suites_dir"].startswith(str(installed)) and got["quick"] == "quick"
    from bkbench.registry import default_registry

    assert got["impls"] == sorted(r.name for r in default_registry().implementations(None))


def test_source_checkout_binds_bkbench_kernels_to_the_folder():
    import bkbench.kernels
    from bkbench.kernels.bk import thomas

    assert Path(bkbench.kernels.__file__).resolve() == ROOT / "kernels" / "__init__.py"
    assert Path(thomas.__file__).resolve() == ROOT / "kernels" / "bk" / "thomas.py"
