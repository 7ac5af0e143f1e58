"""bench/ keeps the scripts that produced committed snapshots, each runnable and documented (issue 24).

Static checks, no GPU: every script is in bench/README.md's table with a snapshot that exists; every name a
Python script imports from the project resolves against the current code (a moved or renamed module fails here,
not on the next device call); the shell scripts parse and name only files that exist.
"""

from __future__ import annotations

import ast
import glob
import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TABLE = (BENCH / "README.md").read_text()
SCRIPTS = sorted(p for p in BENCH.iterdir() if p.is_file() and p.suffix in (".py", ".sh"))
ROWS = [line for line in TABLE.splitlines() if line.startswith("| `")]


def test_every_script_is_in_the_table_and_every_row_names_a_script():
    named = {n for row in ROWS for n in re.findall(r"`([\w.]+\.(?:py|sh))`", row.split("|")[1])}
    assert named == {p.name for p in SCRIPTS}


def test_every_snapshot_in_the_table_exists():
    for row in ROWS:
        for path in re.findall(r"`((?:reports|docs)/[^`]+)`", row.split("|")[3]):
            assert glob.glob(str(ROOT / path)), f"{row.split('|')[1].strip()}: {path} does not exist"


def _project_imports(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "bkbench":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "bkbench"]
    return out


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.suffix == ".py"], ids=lambda p: p.name)
def test_a_python_script_imports_only_what_exists(script):
    for module, names in _project_imports(script):
        mod = importlib.import_module(module)
        for name in names:
            if not hasattr(mod, name):
                importlib.import_module(f"{module}.{name}")  # a submodule; raises when it does not exist


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_script_parses_and_names_existing_files(script):
    if script.suffix == ".sh":
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    for path in set(re.findall(r"\b((?:bench|tests)/[\w/]+\.py)\b", script.read_text())):
        assert (ROOT / path).is_file(), f"{script.name} names {path}, which does not exist"
