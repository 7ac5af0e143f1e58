"""The rendered report opened in a real browser (headless Chromium over the DevTools protocol).

Renders a report from the SYNTHETIC fixture database (tests/fixtures_report.py) and checks that the page loads
with no console error, uncaught exception or failed resource load, that every image decodes
(naturalWidth > 0), and that a full-page screenshot is not blank. A deliberately broken page checks that the
same probe does catch each of those failures.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``; ``.ci/run`` installs it) or ``$CHROMIUM``.
Without a browser the tests skip — except under ``CI=true``, where they fail.
Set ``BKBENCH_REPORT_SHOT=path.png`` to keep the screenshot.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bkbench.harness.report import build_report
from bkbench.harness.report.browser import check_page, find_chromium, screenshot_stats
from tests.fixtures_report import make_fixture_db

CHROMIUM = find_chromium()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser() -> str:
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("CI=true but no Chromium found: .ci/run must `apt-get install -y chromium` (or set $CHROMIUM)")
        pytest.skip("no Chromium on this machine (apt-get install -y chromium, or set $CHROMIUM); CI is not set")
    return CHROMIUM


def test_report_loads_cleanly_in_chromium(browser: str, tmp_path: Path) -> None:
    db = make_fixture_db(tmp_path / "fixture.db", size="small")
    index = build_report([db], tmp_path / "report", compare=("1", "2"), reps=200)
    res = check_page(index, exe=browser)
    assert res.errors == [], "browser reported errors:\n" + "\n".join(res.errors)
    assert res.title == "bkbench report"
    assert len(res.images) >= 8, res.images
    not_loaded = [i["src"] for i in res.images if not (i["w"] > 0 and i["h"] > 0)]
    assert not_loaded == [], f"images that did not load: {not_loaded}"
    for heading in ("Summary", "Crossovers: where the BK-core overtakes each baseline", "Roofline", "Energy",
                    "Accuracy vs speed", "Sparsity", "Autotuning", "Comparison of two runs", "Environment"):
        assert heading in res.text, heading
    assert "SYNTHETIC fixture data" in res.text
    stats = screenshot_stats(res.screenshot)
    if os.environ.get("BKBENCH_REPORT_SHOT"):
        Path(os.environ["BKBENCH_REPORT_SHOT"]).write_bytes(res.screenshot)
    assert stats["width"] >= 1000 and stats["height"] > 3000  # the whole page, not the first screen
    assert stats["non_white"] > 0.05 and stats["std"] > 0.05 and stats["levels"] > 50, stats


def test_probe_catches_a_broken_page(browser: str, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title><link rel="icon" href="data:,"></head><body>'
                    '<img src="missing.png"><script>console.error("planted error"); undefined_fn();</script>'
                    "</body></html>")
    res = check_page(page, exe=browser)
    text = "\n".join(res.errors)
    assert "planted error" in text
    assert "undefined_fn" in text
    assert "missing.png" in text or "ERR_FILE_NOT_FOUND" in text
    assert [i["w"] for i in res.images] == [0]
    assert screenshot_stats(res.screenshot)["non_white"] < 0.01  # an empty page is recognised as blank
