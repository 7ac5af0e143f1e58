"""Git side of ``bkbench premerge``: the merge base, the changed files, an export of the base tree, and which
kernel modules a change affects (a changed helper ``kernels/_x.py`` affects every module importing it)."""

from __future__ import annotations

import ast
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


# -- git ---------------------------------------------------------------------------------------------------------
def _git(repo: Path, *args: str, binary: bool = False) -> Any:
    res = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=not binary)
    if res.returncode != 0:
        err = res.stderr if not binary else res.stderr.decode(errors="replace")
        raise ValueError(f"git {' '.join(args)} failed in {repo}: {err.strip()}")
    return res.stdout


def repo_root(path: str | Path = ".") -> Path:
    try:
        return Path(_git(Path(path), "rev-parse", "--show-toplevel").strip())
    except ValueError:
        raise ValueError(f"repo: {Path(path).resolve()} is not inside a git repository; run premerge from the "
                         "bkbench checkout or pass --repo") from None


def merge_base(repo: Path, base: str) -> str:
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    except ValueError:
        raise ValueError(f"base: {base!r} is not a commit of {repo}; fetch it (git fetch origin {base}) or pass "
                         "--base with a branch, tag or sha") from None
    return _git(repo, "merge-base", base, "HEAD").strip()


def changed_files(repo: Path, base_sha: str) -> list[str]:
    """Files that differ between ``base_sha`` and the working tree (committed, staged, unstaged, untracked)."""
    diff = _git(repo, "diff", "--name-only", base_sha).split("\n")
    untracked = _git(repo, "ls-files", "--others", "--exclude-standard").split("\n")
    return sorted({p for p in diff + untracked if p})


def export_tree(repo: Path, sha: str, dest: Path) -> Path:
    """Write the tree of ``sha`` into ``dest`` (``git archive``; the repository is not modified)."""
    data = _git(repo, "archive", "--format=tar", sha, binary=True)
    dest.mkdir(parents=True, exist_ok=True)
    tar_path = dest.parent / f"{dest.name}.tar"
    tar_path.write_bytes(data)
    with tarfile.open(tar_path) as tar:
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # Python < 3.10.12 has no extraction filters
            tar.extractall(dest)
    tar_path.unlink()
    return dest


# -- which kernels changed ---------------------------------------------------------------------------------------
KERNELS = "bkbench.kernels"  # the import name of the tree's kernels/ folder


def _imports(path: Path, package: str = KERNELS, here: str = KERNELS) -> set[str]:
    """Modules of ``package`` imported by the file at ``path`` (absolute imports, and relative ones resolved
    against ``here``, the package the file is in)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name == package or a.name.startswith(package + ".")}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = here.split(".")
                if node.level > len(parts):
                    continue
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{mod}" if mod else base
            if mod == package or mod.startswith(package + "."):
                out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return out


def changed_kernel_modules(tree: Path, files: Iterable[str]) -> set[str]:
    """Kernel modules (``bkbench.kernels.<family>.x``) of ``tree`` affected by the changed ``files`` (paths
    relative to the tree): changed modules and every module that imports one of them, transitively. A changed
    ``__init__.py`` of ``kernels/`` affects all modules; one of a family folder, that family's."""
    kdir = tree / "kernels"

    def name_of(rel: Path) -> str:
        return ".".join((KERNELS, *rel.with_suffix("").parts))

    modules = {name_of(p.relative_to(kdir)): p for p in sorted(kdir.rglob("*.py")) if p.name != "__init__.py"}
    direct = set()
    for f in files:
        p = Path(f)
        if p.parts[:1] != ("kernels",) or p.suffix != ".py":
            continue
        rel = Path(*p.parts[1:])
        if p.name == "__init__.py":
            family = name_of(rel.parent) if rel.parent != Path(".") else KERNELS
            direct |= {m for m in modules if m.startswith(family + ".")}
        else:
            direct.add(name_of(rel))
    deps = {m: _imports(path, here=m.rsplit(".", 1)[0]) for m, path in modules.items()}
    affected = set(direct)
    grew = True
    while grew:
        grew = False
        for m, imported in deps.items():
            if m not in affected and imported & affected:
                affected.add(m)
                grew = True
    return affected
