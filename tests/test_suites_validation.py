"""Suites are refused before running when they cannot be meant (issue 25, bug 6): an unknown implementation name,
an unknown top-level key, or a shape no device holds (N = 10^12) -- a clear error, exit status 2, no traceback,
nothing stored. A kernel whose module failed to import stays a skipped case with the import error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bkbench.harness.suites import list_suites, parse_suite
from bkbench.registry import ImportFailure, Registry, default_registry

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
name = "tiny"
[[group]]
name = "g"
implementations = ["thomas"]
n = [16]
"""
BAD = {
    "unknown implementation": (GOOD.replace('["thomas"]', '["thomas", "thomass"]'), "unknown implementation"),
    "unknown top-level key": ("budget_s = 3\n" + GOOD, "unknown top-level key"),
    "N = 10^12": (GOOD.replace("n = [16]", "n = [1000000000000]"), "beyond any single device"),
    "a mode that does not exist in a modes cap": (GOOD + '[caps.thomas]\nmodes = ["bwd"]\n', "modes must be"),
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_bad_suite_is_refused_when_planned(what: str) -> None:
    text, msg = BAD[what]
    with pytest.raises(ValueError, match=msg):
        parse_suite(text, "tiny").expand(default_registry(), "cpu")


@pytest.mark.parametrize("what", sorted(BAD))
def test_bad_suite_exits_2_and_stores_nothing(what: str, tmp_path: Path) -> None:
    text, msg = BAD[what]
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    db = tmp_path / "r.db"
    res = subprocess.run([sys.executable, "-m", "bkbench", "run", str(suite), "--device", "cpu", "--db", str(db),
                          "--no-progress"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert msg in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not db.exists(), "a refused suite must not open a run"


def test_good_suite_and_shipped_suites_pass() -> None:
    (case,) = parse_suite(GOOD, "tiny").expand(default_registry(), "cpu")
    assert case.impl == "thomas" and case.skip_reason is None
    for s in list_suites():  # every shipped suite names only registered implementations and sane shapes
        for device in ("cpu", "cuda"):
            s.expand(default_registry(), device)


def test_failed_import_is_a_skipped_case_not_an_error() -> None:
    reg = Registry()
    for rec in default_registry().implementations(None):
        reg.add(rec)
    reg.failures = [ImportFailure("bkbench.kernels.bk.broken", "SyntaxError: invalid syntax at kernels/bk/broken.py:3")]
    cases = parse_suite(GOOD.replace('["thomas"]', '["thomas", "broken"]'), "tiny").expand(reg, "cpu")
    broken = next(c for c in cases if c.impl == "broken")
    assert broken.skip_reason and "bkbench.kernels.bk.broken failed to import" in broken.skip_reason


def test_a_modes_cap_skips_the_other_modes_with_the_reason() -> None:
    """``modes`` in a cap keeps an implementation to those modes; its other cases stay in the plan as skipped."""
    text = GOOD.replace('n = [16]', 'n = [16]\nmode = ["fwd", "fwd+bwd"]') + '[caps.thomas]\nmodes = ["fwd"]\n'
    cases = parse_suite(text).expand(default_registry(), "cpu")
    by_mode = {c.mode: c.skip_reason for c in cases}
    assert by_mode["fwd"] is None
    assert by_mode["fwd+bwd"] == "suite cap for thomas: mode fwd+bwd is not in modes = ['fwd']"
