"""Provenance and publishing (issue 25, bug 8): the environment header's git sha notices untracked files (a run
with a new, uncommitted kernel is not stamped as a clean commit), and a report killed midway never leaves an
``index.html`` that links deleted figures."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

from bkbench.harness.env import git_sha, git_state
from bkbench.harness.report import build_report

render_mod = importlib.import_module("bkbench.harness.report.render")  # the package re-exports the function as `render`


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_git_sha_notices_untracked_and_changed_files(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    (repo / "kernels").mkdir(parents=True)
    (repo / "kernels" / "thomas.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "add", ".")
    _git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "base")
    clean = git_state(repo)
    assert clean["dirty"] is False and git_sha(repo) == clean["sha"] and len(clean["sha"]) == 40
    new = repo / "kernels" / "mine.py"
    new.write_text("def fast(): ...\n")  # a new kernel, not committed, not even added
    untracked = git_state(repo)
    assert untracked["dirty"] is True and git_sha(repo) == f"{clean['sha']}-dirty.{untracked['diff_hash']}"
    new.write_text("def faster(): ...\n")
    assert git_state(repo)["diff_hash"] != untracked["diff_hash"]  # another uncommitted state, another hash
    new.unlink()
    (repo / "kernels" / "thomas.py").write_text("x = 2\n")
    assert git_state(repo)["dirty"] is True
    (repo / ".gitignore").write_text("results/\n")
    _git(repo, "checkout", "kernels/thomas.py")
    _git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "add", ".gitignore")
    _git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "ignore")
    (repo / "results").mkdir()
    (repo / "results" / "bk.db").write_text("ignored")
    assert git_state(repo)["dirty"] is False  # ignored files do not count


def _linked(out: Path) -> list[Path]:
    html = (out / "index.html").read_text()
    return [out / m for m in re.findall(r'(?:src|href)="((?:figures|data)/[^"]+)"', html)]


@pytest.fixture
def tiny_db(tmp_path: Path) -> Path:
    from tests.test_report import _tiny_db

    return _tiny_db(tmp_path / "tiny.db")


@pytest.mark.parametrize("where", ["plotting", "publishing the page"])
def test_killed_report_leaves_a_complete_page(tiny_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              where: str) -> None:
    out = tmp_path / "report"
    build_report([tiny_db], out, reps=100, use_registry=False)
    before = (out / "index.html").read_text()
    links = _linked(out)
    assert any(p.parent.name == "figures" for p in links) and all(p.is_file() for p in links)

    class Killed(BaseException):
        pass

    if where == "plotting":
        def killed(*args, **kwargs):
            raise Killed
        monkeypatch.setattr(render_mod.plots, "make_all", killed)
    else:
        real = render_mod.os.replace

        def replace(src, dst):
            if Path(dst).name == "index.html":
                raise Killed
            return real(src, dst)
        monkeypatch.setattr(render_mod.os, "replace", replace)
    with pytest.raises(Killed):
        build_report([tiny_db], out, reps=100, use_registry=False)
    assert (out / "index.html").read_text() == before
    missing = [p for p in _linked(out) if not p.is_file()]
    assert not missing, f"the old page links deleted files: {missing}"
    assert not list(out.glob(".render-*")), "the staging directory is removed even when the render fails"


def test_rerender_replaces_and_cleans(tiny_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    build_report([tiny_db], out, reps=100, use_registry=False)
    (out / "figures" / "stale-0000000000.png").write_bytes(b"old")
    build_report([tiny_db], out, reps=100, use_registry=False)
    links = _linked(out)
    assert all(p.is_file() for p in links)
    assert {p.name for p in (out / "figures").glob("*.png")} == {p.name for p in links if p.parent.name == "figures"}
