"""Render an :class:`~bkbench.harness.report.analysis.Analysis` to a self-contained HTML page.

Output layout (``out_dir``)::

    index.html          the report (no external scripts, styles or fonts)
    figures/*.png       the figures (or embedded as data: URIs with ``embed=True``)
    data/*.csv          the computed tables (fits, crossovers, failures, comparison) for checking the numbers

The sections' context (numbers -> strings with units) comes from :mod:`bkbench.harness.report.sections`;
the template only lays the strings out. This module writes the figures and tables and publishes the page.

Publishing is crash-safe: everything is rendered into a staging directory inside ``out_dir`` first; then the
figures move into ``figures/`` under content-hashed names (``crossover_0-1a2b3c4d5e.png``: an unchanged figure
keeps its name), the CSVs replace theirs one by one, and ``index.html`` is replaced last (``os.replace``, atomic).
Files the new page no longer links are deleted only after that. A report killed at any point leaves an
``index.html`` -- the old or the new one -- whose figures and tables all exist.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from bkbench.harness.report import plots, sections, usercall
from bkbench.harness.report.analysis import Analysis
from bkbench.harness.report.plotstyle import Figure

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

# imported from here by code outside the package (the tests)
_headline = sections.headline


# -- page ----------------------------------------------------------------------------------------------------------


def _figure_context(figs: dict[str, list[Figure]]) -> dict[str, list[dict[str, str]]]:
    return {sec: [{"src": f"figures/{f.file}", "title": f.title, "caption": f.caption} for f in lst]
            for sec, lst in figs.items()}


def _drop_column(obj: Any, header: str) -> None:
    """Remove the column titled ``header`` from every table dict (``head``/``rows``) nested in ``obj``."""
    if isinstance(obj, dict):
        if "head" in obj and "rows" in obj and header in obj["head"]:
            i = obj["head"].index(header)
            obj["head"] = obj["head"][:i] + obj["head"][i + 1:]
            obj["rows"] = [row[:i] + row[i + 1:] for row in obj["rows"]]
        for v in obj.values():
            _drop_column(v, header)
    elif isinstance(obj, list):
        for v in obj:
            _drop_column(v, header)


def write_csvs(an: Analysis, data_dir: Path) -> list[str]:
    """Write the computed tables as CSV (stale ones from an earlier report in the same place are removed);
    returns the file names written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("*.csv"):
        old.unlink()
    written = []
    tables = {"fits.csv": an.fits, "crossovers.csv": an.crossover_df, "oom.csv": an.oom,
              "failures.csv": an.failures.drop(columns=["samples_json"], errors="ignore"),
              "roofline.csv": an.roofline, "pareto_points.csv": an.pareto["points"], "sparsity.csv": an.sparsity,
              "usercall.csv": usercall.overhead_rows(an.loaded.df)}
    if an.comparison is not None:
        tables["comparison.csv"] = an.comparison["cases"]
    for name, df in tables.items():
        if df is not None and len(df):
            df.to_csv(data_dir / name, index=False)
            written.append(name)
    return written


def _hashed_name(path: Path) -> str:
    """``stem-<10 hex digits of the content's SHA-256><suffix>``: a new figure never overwrites one that the
    published page still links, and an unchanged figure keeps its name."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return f"{path.stem}-{digest}{path.suffix}"


def render(an: Analysis, out_dir: str | Path, *, title: str = "bkbench report", embed: bool = False,
           sources: list[str] | None = None) -> Path:
    """Write figures, CSV tables and ``index.html`` into ``out_dir``; returns the path of ``index.html``.
    Crash-safe (module docstring): the page being replaced stays complete until the new one is in place."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".render-", dir=out))
    try:
        return _render_staged(an, out, stage, title=title, embed=embed, sources=sources)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _render_staged(an: Analysis, out: Path, stage: Path, *, title: str, embed: bool,
                   sources: list[str] | None) -> Path:
    figs = plots.make_all(an, stage / "figures")
    csvs = write_csvs(an, stage / "data")
    fig_ctx = _figure_context(figs)
    final: dict[str, str] = {}  # staged figures/<file> -> published figures/<hashed file>
    for lst in fig_ctx.values():
        for f in lst:
            staged = stage / f["src"]
            if embed:
                f["src"] = "data:image/png;base64," + base64.b64encode(staged.read_bytes()).decode("ascii")
            else:
                final[f["src"]] = f["src"] = f"figures/{_hashed_name(staged)}"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    tmpl = env.get_template("report.html.j2")
    from bkbench import __version__

    ctx = {
        "title": title,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "sources": sources or sorted({r["db"] for r in an.loaded.runs}),
        "runs": [sections.run_title(r) for r in an.loaded.runs],
        "synthetic": sections.synthetic(an),
        "notes": an.loaded.notes + usercall.notes(an.loaded.df) + ([] if an.facts else [
            "The implementation registry could not be imported: exactness of implementations is unknown, so "
            "approximate implementations may appear among the headline candidates."]),
        "n_rows": len(an.loaded.df),
        "headline": sections.headline(an),
        "fit_rule": an.fit_rule,
        "fits": sections.fits(an),
        "crossovers": sections.crossover_matrices(an),
        "oom": sections.oom(an),
        "roofline": sections.roofline(an),
        "usercall": sections.user_call(an),
        "energy": sections.energy(an),
        "energy_missing": sections.table(an.energy_missing, [("energy status", "energy_status", None),
                                                             ("cases", "cases", None)]),
        "pareto": sections.pareto(an),
        "sparsity": sections.sparsity(an),
        "tuning": sections.tuning(an),
        "comparison": sections.comparison(an),
        "failures": sections.failures(an),
        "environment": sections.environment(an),
        "figs": fig_ctx,
        "csvs": csvs,
        "embed": embed,
        "reps": an.reps,
    }
    platforms = set(an.loaded.df["platform"]) if len(an.loaded.df) else set()
    if len(platforms) <= 1:  # one platform: say it once (environment), not on every table row
        _drop_column(ctx, "platform")
    if an.fits["timing_mode"].nunique() <= 1 if len(an.fits) else True:
        _drop_column(ctx, "timing")
    page = tmpl.render(**ctx)
    (stage / "index.html").write_text(page, encoding="utf-8")
    # publish: figures under new names and the tables first, the page last, then what the new page no longer links
    fig_dir, data_dir = out / "figures", out / "data"
    if final:
        fig_dir.mkdir(exist_ok=True)
    for lst in figs.values():
        for f in lst:
            src = f"figures/{f.file}"
            if src in final:
                os.replace(stage / src, out / final[src])
    data_dir.mkdir(exist_ok=True)
    for name in csvs:
        os.replace(stage / "data" / name, data_dir / name)
    index = out / "index.html"
    os.replace(stage / "index.html", index)
    linked = {Path(v).name for v in final.values()}
    if fig_dir.exists():
        for old in fig_dir.glob("*.png"):
            if old.name not in linked:
                old.unlink()
        if not any(fig_dir.iterdir()):
            fig_dir.rmdir()
    for old in data_dir.glob("*.csv"):
        if old.name not in csvs:
            old.unlink()
    for left in out.glob(".render-*"):  # staging directories of renders killed long ago
        if left != stage and left.is_dir() and _dt.datetime.now().timestamp() - left.stat().st_mtime > 3600:
            shutil.rmtree(left, ignore_errors=True)
    return index
