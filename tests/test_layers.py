"""The architecture's rules, read from the code's imports (docs/architecture.md, "Two layers").

- The library (what a model imports: ``LIBRARY`` and every module of ``bkbench.kernels``) imports no harness
  module, at module level or inside a function.
- No import circles among the project's modules (function-level imports count: a lazy import that runs back up
  is still a circle).
- No module over 500 lines outside ``bench/`` and the tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = {
    "bkbench", "bkbench._source_tree", "bkbench.api", "bkbench.eager", "bkbench.op", "bkbench.bound_calls",
    "bkbench.workspace", "bkbench.validate", "bkbench.registry", "bkbench.plugins", "bkbench.dispatch",
    "bkbench.store", "bkbench.baseline_meta",
}


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


def _in_library(name: str) -> bool:
    return name in LIBRARY or name == "bkbench.kernels" or name.startswith("bkbench.kernels.")


def test_the_library_imports_no_harness_module():
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _in_library(m) for t in ts if not _in_library(t))
    assert not bad, bad


def test_the_library_is_what_the_docs_say():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for name in LIBRARY - {"bkbench"}:
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
