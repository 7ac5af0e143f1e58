"""The architecture's rules, read from the code's imports (docs/architecture.md, "Two layers").

- The tree shows the layers: the library is ``bkbench/`` (its top-level modules) and ``kernels/`` (installed as
  ``bkbench.kernels``); the harness is ``bkbench/harness/``. ``bkbench/__main__.py`` (``python -m bkbench``, the
  command line) belongs to the harness.
- The library imports no harness module, at module level or inside a function.
- No import circles among the project's modules (function-level imports count: a lazy import that runs back up
  is still a circle).
- No module over 500 lines outside ``bench/`` and the tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = "bkbench.harness"
COMMAND_ENTRY = "bkbench.__main__"


def _modules() -> dict[str, Path]:
    out = {}
    for base, prefix in (("bkbench", ("bkbench",)), ("kernels", ("bkbench", "kernels"))):
        for path in (ROOT / base).rglob("*.py"):
            parts = list(path.relative_to(ROOT / base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((*prefix, *parts))] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports (absolute or relative, anywhere in the file), resolved to modules:
    ``from pkg import mod`` names ``pkg.mod`` when that is a module, else ``pkg``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _in_harness(name: str) -> bool:
    return name == COMMAND_ENTRY or name == HARNESS or name.startswith(HARNESS + ".")


LIBRARY = {m for m in MODULES if not _in_harness(m) and not m.startswith("bkbench.kernels.")}


def _in_library(name: str) -> bool:
    return not _in_harness(name)


def test_the_tree_shows_the_layers():
    # the harness is a folder holding the measuring, checking, tuning and reporting modules; the library's
    # public modules sit at the top of bkbench/
    assert len([m for m in MODULES if m.startswith(HARNESS + ".")]) > 30
    assert {"bkbench.api", "bkbench.registry", "bkbench.validate", "bkbench.dispatch"} <= LIBRARY
    assert {"bkbench.harness.runner", "bkbench.harness.gate", "bkbench.harness.timing"} <= set(MODULES)


def test_the_library_imports_no_harness_module():
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _in_library(m) for t in ts if not _in_library(t))
    assert not bad, bad


def test_the_library_is_what_the_docs_say():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for name in LIBRARY - {"bkbench", "bkbench.kernels"}:
        assert f"`bkbench/{name.split('.', 1)[1]}.py`" in text, name


def test_no_import_circles():
    # a package's __init__ importing its own submodules to re-export them is not a circle of the design
    graph = {m: {t for t in ts if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, ts in GRAPH.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_module_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
