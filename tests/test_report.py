"""Tests of the report: statistics against known values, analyses against synthetic laws with known answers,
and rendering (from the SYNTHETIC fixture database in tests/fixtures_report.py — invented numbers)."""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bkbench.harness.report import build_report
from bkbench.harness.report.analysis import (
    Series,
    analyze,
    assign_shapes,
    compare_runs,
    crossover,
    fit_range,
    oom_table,
    pareto_front,
    tuning_from_json,
)
from bkbench.harness.report.data import load, load_pair, variant_of
from bkbench.harness.report.render import _headline
from bkbench.harness.report.stats import benjamini_hochberg, fit_power_law, mann_whitney_p, t_ppf
from bkbench.store import Store
from tests.fixtures_report import make_fixture_db


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture_db(tmp_path_factory.mktemp("report") / "fixture.db", size="small")


@pytest.fixture(scope="module")
def rendered(fixture_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    return build_report([fixture_db], out, compare=("1", "2"), reps=300)


# -- statistics ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423),
                                          (1e6, 1.9600)])
def test_t_quantile_matches_tables(df: float, expected: float) -> None:
    assert t_ppf(0.975, df) == pytest.approx(expected, abs=2e-4)
    assert t_ppf(0.025, df) == pytest.approx(-expected, abs=2e-4)


def test_fit_recovers_exact_power_law() -> None:
    n = 2.0 ** np.arange(8, 17)
    fit = fit_power_law(n, 3e-9 * n**1.5)
    assert fit.alpha == pytest.approx(1.5, abs=1e-12)
    assert fit.c == pytest.approx(3e-9, rel=1e-9)
    assert fit.alpha_hi - fit.alpha_lo < 1e-9
    assert (fit.n_min, fit.n_max, fit.n_points) == (256.0, 65536.0, 9)


def test_fit_interval_covers_true_exponent_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    n = 2.0 ** np.arange(8, 15)
    hits, widths = 0, []
    for _ in range(400):
        t = 2e-8 * n**1.2 * np.exp(rng.normal(0, 0.05, n.size))
        fit = fit_power_law(n, t)
        hits += fit.alpha_lo <= 1.2 <= fit.alpha_hi
        widths.append(fit.alpha_hi - fit.alpha_lo)
    assert 0.90 <= hits / 400 <= 0.99  # nominal 0.95; binomial sd ~0.011
    assert 0.0 < np.median(widths) < 0.2


@pytest.mark.parametrize("n, t", [([256, 256, 256], [1.0, 2.0, 3.0]), ([256], [1.0]), ([1, 2], [1.0, -1.0])])
def test_fit_rejects_unusable_input(n: list, t: list) -> None:
    with pytest.raises(ValueError, match="n: a power-law fit needs"):
        fit_power_law(np.array(n, float), np.array(t, float))


def test_fit_range_drops_latency_floor_and_respects_user_range() -> None:
    n = 2.0 ** np.arange(6, 17)  # 64 .. 65536
    t = 1e-4 + 1e-8 * n  # flat until N ~ 1e4, then linear
    mask = fit_range(n, t)
    assert mask[-1] and not mask[0]
    assert n[mask].min() >= 8192  # t >= 2x the floor from N = 1e4 on
    fit = fit_power_law(n[mask], t[mask])
    assert 0.75 < fit.alpha < 1.0  # approaching the asymptotic exponent 1 from below
    user = fit_range(n, t, min_n=1024, max_n=4096)
    assert list(n[user]) == [1024, 2048, 4096]
    flat = fit_range(n[:4], np.full(4, 1e-5))  # all at the floor: fall back to the top three points
    assert flat.sum() == 3 and not flat[0]


def test_mann_whitney_matches_hand_computation() -> None:
    # U = 0, mu = 4.5, var = 3*3*7/12 = 5.25, z = (4.5 - 0.5)/sqrt(5.25)
    expected = math.erfc((4.0 / math.sqrt(5.25)) / math.sqrt(2))
    assert mann_whitney_p(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == pytest.approx(expected, rel=1e-12)
    assert mann_whitney_p(np.ones(5), np.ones(7)) == 1.0
    rng = np.random.default_rng(0)
    assert mann_whitney_p(rng.normal(0, 1, 50), rng.normal(1, 1, 50)) < 1e-4


def test_large_sample_bootstrap_matches_explicit_resampling(monkeypatch: pytest.MonkeyPatch) -> None:
    from bkbench.harness.report import stats

    x = np.random.default_rng(0).exponential(1.0, 1500)  # skewed, like timing samples
    monkeypatch.setattr(stats, "LARGE_SAMPLE", 10**9)
    explicit = stats.bootstrap_medians(x, 3000, np.random.default_rng(1))
    monkeypatch.setattr(stats, "LARGE_SAMPLE", 400)
    fast = stats.bootstrap_medians(x, 3000, np.random.default_rng(2))
    assert fast.std() == pytest.approx(explicit.std(), rel=0.08)
    np.testing.assert_allclose(np.quantile(fast, [0.025, 0.5, 0.975]), np.quantile(explicit, [0.025, 0.5, 0.975]),
                               rtol=0.01)


def test_benjamini_hochberg_known_values() -> None:
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2, np.nan]))
    np.testing.assert_allclose(q[:4], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert np.isnan(q[4])


def test_pareto_front_of_known_points() -> None:
    time = np.array([1.0, 2.0, 3.0, 4.0, 2.5])
    err = np.array([1e-2, 1e-4, 1e-3, 1e-8, 1e-4])
    assert pareto_front(time, err).tolist() == [True, True, False, True, False]


def test_variant_of_is_compact_and_sorted() -> None:
    assert variant_of('{"window": 8, "gauss": "table"}') == "gauss=table, window=8"
    assert variant_of('{"table_shape": [64, 128]}') == "table_shape=64x128"
    assert variant_of(None) == variant_of("{}") == variant_of("not json") == ""


def test_tuning_json_in_the_tuner_cache_format() -> None:
    doc = {"schema": 1, "entries": {"GPU X|float32|k|N4096_E16777216": {
        "config": {"seg": 128, "warps": 4}, "ms": 0.05, "default_ms": 0.08, "bwd_ms": 0.1, "bwd_default_ms": None,
        "source": "tuned"}}}
    tune, disp = tuning_from_json([("tuned.json", doc)])
    assert len(tune) == 1 and disp.empty  # the backward pair has no default time: not a record
    row = tune.iloc[0]
    assert (row["gpu"], row["dtype"], row["coupling"], row["bucket"], row["mode"]) == (
        "GPU X", "float32", "k", "N4096_E16777216", "fwd")
    assert row["tuned_s"] == pytest.approx(5e-5) and row["speedup"] == pytest.approx(1.6)
    assert '"seg": 128' in row["config"]


# -- crossovers of known laws -------------------------------------------------------------------------------


def _series(impl: str, kind: str, ns: np.ndarray, t: np.ndarray, rng: np.random.Generator,
            spread: float = 0.01) -> Series:
    key = ("gpu", kind, impl, "", "float32", "fwd", 8.0, 512.0, 0.0, "cold")
    samples = [ti * np.exp(rng.normal(0, spread, 30)) for ti in t]
    med = np.array([np.median(s) for s in samples])
    s = Series(key=key, ns=ns.astype(float), t=med, samples=samples, sigma=np.zeros(ns.size), primary=True)
    s.fit = fit_power_law(s.ns, s.t)
    return s


def test_a_group_with_two_widths_at_constant_tokens_is_two_constant_work_series() -> None:
    """B*N fixed, d in {256, 1024}: one "E<elements>" sweep per width; a fixed-shape group stays "B<b>_d<d>"."""
    rows = []
    for d in (256, 1024):
        for n, b in ((256, 1024), (1024, 256), (4096, 64)):
            rows.append({"group": "fill", "batch": b, "d": d, "n": n, "elements": b * d * n})
    # B = 8 at two widths: (d 256, N 1024) and (d 1024, N 256) have the same element count but are not a sweep
    rows += [{"group": "widths", "batch": 8, "d": d, "n": n, "elements": 8 * d * n}
             for d in (256, 1024) for n in (256, 1024, 4096)]
    ok = pd.DataFrame(rows).assign(platform="GPU", kind="bk", impl="triton_fused", variant="", dtype="bfloat16",
                                   mode="fwd", sparsity=0.0, timing_mode="cold")
    got = assign_shapes(ok)
    assert list(got[:3]) == [f"E{1 << 26}"] * 3 and list(got[3:6]) == [f"E{1 << 28}"] * 3
    assert list(got[6:]) == ["B8_d256"] * 3 + ["B8_d1024"] * 3


def test_oom_of_a_constant_work_sweep_is_one_row_per_sweep() -> None:
    """B*N fixed (B chosen to fill the GPU): the first N out of memory and the largest N that ran are read along
    the sweep, not per (B, d) point; a fixed-shape group keeps its "B<b>_d<d>" row."""
    rows = []
    for d in (256, 1024):
        for n, b in ((256, 1024), (1024, 256), (4096, 64), (16384, 16)):
            status = "oom" if n * d >= (4096 if d == 1024 else 16384) * d else "ok"
            rows.append({"group": "fill", "batch": b, "d": d, "n": n, "elements": b * d * n, "status": status,
                         "reason": f"oom at {n}" if status == "oom" else None})
    rows += [{"group": "widths", "batch": 8, "d": 512, "n": n, "elements": 8 * 512 * n,
              "status": "oom" if n >= 16384 else "ok", "reason": None} for n in (1024, 4096, 16384, 65536)]
    df = pd.DataFrame(rows).assign(platform="GPU", kind="attention", impl="attention_naive", variant="",
                                   dtype="bfloat16", mode="fwd", sparsity=0.0, timing_mode=None)
    df.loc[df["status"] == "ok", "timing_mode"] = "cold"
    got = oom_table(df).set_index("shape")
    assert set(got.index) == {"B8_d512", f"E{1 << 26}", f"E{1 << 28}"}
    assert (got.loc[f"E{1 << 28}", "first_oom_n"], got.loc[f"E{1 << 28}", "largest_ok_n"]) == (4096.0, 1024.0)
    assert (got.loc[f"E{1 << 28}", "batch"], got.loc[f"E{1 << 28}", "reason"]) == (64, "oom at 4096")
    assert (got.loc[f"E{1 << 26}", "first_oom_n"], got.loc[f"E{1 << 26}", "largest_ok_n"]) == (16384.0, 4096.0)
    assert (got.loc["B8_d512", "first_oom_n"], got.loc["B8_d512", "largest_ok_n"]) == (16384.0, 4096.0)
    assert oom_table(df[df["status"] == "ok"]).empty


def test_crossover_of_two_known_lines() -> None:
    # BK: t = 1e-3 N, attention: t = 1e-6 N^2  ->  equal at N* = 1e-3 / 1e-6 = 1000
    rng = np.random.default_rng(0)
    ns = 2.0 ** np.arange(6, 15)
    bk = _series("bk_impl", "bk", ns, 1e-3 * ns, rng)
    att = _series("attn", "attention", ns, 1e-6 * ns**2, rng)
    c = crossover(bk, att, reps=400)
    assert c.state == "cross"
    assert c.n_star == pytest.approx(1000, rel=0.03)
    assert c.lo <= 1000 <= c.hi and c.hi / c.lo < 1.2
    assert c.fit_n_star == pytest.approx(1000, rel=0.03)
    assert c.fit_lo <= 1000 <= c.fit_hi
    assert c.boot_agree > 0.99
    assert "within the fitted ranges" in c.fit_note


def test_crossover_states_when_lines_do_not_cross_in_range() -> None:
    rng = np.random.default_rng(1)
    ns = 2.0 ** np.arange(6, 10)  # 64 .. 512: the true N* = 1000 lies beyond
    bk = _series("bk_impl", "bk", ns, 1e-3 * ns, rng)
    att = _series("attn", "attention", ns, 1e-6 * ns**2, rng)
    slow = crossover(bk, att, reps=200)
    assert slow.state == "slower" and math.isinf(slow.n_star)
    assert slow.fit_n_star == pytest.approx(1000, rel=0.05) and "extrapolated" in slow.fit_note
    fast = crossover(_series("bk_impl", "bk", ns, 1e-9 * ns, rng), att, reps=200)
    assert fast.state == "faster" and fast.text().startswith("< 64")


def test_crossover_of_nearly_parallel_fits_does_not_overflow() -> None:
    # BK slower by 10x with an exponent 1e-4 lower: the fits cross near exp(2.3 / 1e-4), far beyond a float
    rng = np.random.default_rng(2)
    ns = 2.0 ** np.arange(8, 14)
    bk = _series("bk_impl", "bk", ns, 1e-5 * ns ** 0.9999, rng, spread=1e-4)
    base = _series("ssm", "ssm", ns, 1e-6 * ns, rng, spread=1e-4)
    c = crossover(bk, base, reps=100)
    assert c.state == "slower"
    assert c.fit_n_star > 1e300 and "extrapolated" in c.fit_note
    assert c.fit_text()  # renders


# -- analyses on the fixture database ---------------------------------------------------------------------------


def test_load_is_read_only_and_deduplicates_runs(fixture_db: Path) -> None:
    before = hashlib.sha256(fixture_db.read_bytes()).hexdigest()
    loaded = load([fixture_db])
    assert hashlib.sha256(fixture_db.read_bytes()).hexdigest() == before
    assert loaded.all_runs == ["1", "2"]
    assert set(loaded.df["run"]) == {"2"} | ({"1"} if (loaded.df["run"] == "1").any() else set())
    with Store(fixture_db) as st:
        n2 = len(st.results([2]))
    assert (loaded.df["run"] == "2").sum() == n2  # run 2 re-measured every case of run 1
    assert any("latest run" in n for n in loaded.notes)
    only1 = load([fixture_db], ["1"])
    assert set(only1.df["run"]) == {"1"}
    with pytest.raises(ValueError, match="run: no run named '9'"):
        load([fixture_db], ["9"])


def test_fixture_exponents_recovered_within_interval(fixture_db: Path) -> None:
    an = analyze(load([fixture_db]), reps=200, use_registry=False)
    fits = an.fits.set_index(["label", "mode", "shape"])
    att = fits.loc[("attention_sdpa_flash bf16", "fwd", "B8_d512")]
    assert att["alpha_lo"] <= 2.0 <= att["alpha_hi"]  # quadratic law
    thomas = fits.loc[("thomas f32", "fwd", "B8_d512")]
    assert thomas["alpha_lo"] <= 1.0 <= thomas["alpha_hi"] and thomas["alpha"] < 1.0  # floor + linear
    # the constant-work group (B*d*N = 2^24, batch shrinking with N) is one series of its own, not split per shape
    flat = fits.loc[("triton_fused f32", "fwd", "E16777216")]
    assert flat["sizes"] == 5 and -0.2 < flat["alpha"] < 0.3
    # its (B, d) = (8, 512) point is also a point of the equal-work series, which has no row of its own there
    assert fits.loc[("triton_fused f32", "fwd", "B8_d512")]["sizes"] == 5
    oom = oom_table(an.loaded.df)
    row = oom[(oom["impl"] == "attention_sdpa_math") & (oom["mode"] == "fwd")].iloc[0]
    assert (row["first_oom_n"], row["largest_ok_n"]) == (65536.0, 16384.0)


def test_suite_without_equal_work_bk_forward_says_so(tmp_path: Path) -> None:
    db = make_fixture_db(tmp_path / "no_eq.db", size="small", two_runs=False, equal_work_fwd=False)
    an = analyze(load([db]), reps=100, use_registry=False)
    fwd = [h for h in an.headline if h["mode"] == "fwd" and h["shape"] == "B8_d512"]
    assert len(fwd) == 1 and fwd[0]["bk"] is None and "attention_sdpa_flash bf16" in fwd[0]["baselines"]
    bwd = [h for h in an.headline if h["mode"] == "fwd+bwd" and h["shape"] == "B8_d512"]
    assert bwd[0]["bk"] is not None and bwd[0]["rows"]  # the fwd+bwd sweep is at the baselines' shape
    sentences = [h["sentence"] for h in _headline(an)]
    assert any("no exact BK-core series with two or more sizes was" in t for t in sentences)


def test_comparison_finds_the_planted_speedup_only(fixture_db: Path) -> None:
    a, b, _ = load_pair([fixture_db], "1", "2")
    res = compare_runs(a, b, reps=500)
    cases = res["cases"]
    fused = cases[(cases["impl"] == "triton_fused") & (cases["variant"] == "") & (cases["sparsity"] == 0)]
    assert len(fused) == 14 and (fused["verdict"] == "B faster").all()  # 9 equal-work + 5 constant-work
    np.testing.assert_allclose(fused["ratio"], 0.9, rtol=0.03)
    others = cases[cases["impl"] != "triton_fused"]
    assert (others["verdict"] == "no significant change").mean() > 0.95  # null cases: no false alarms
    changes = res["status_changes"]
    assert len(changes) == 1 and changes.iloc[0]["status_a"] == "crash" and changes.iloc[0]["status_b"] == "ok"


def test_report_numbers_match_the_database(rendered: Path, fixture_db: Path) -> None:
    html = rendered.read_text()
    fits = pd.read_csv(rendered.parent / "data" / "fits.csv")
    # every fitted exponent in the headline sentence is the one in fits.csv, which is computed from the rows
    m = re.search(r"The BK-core \((\S+) f32, the fastest exact BK-core series at the largest size measured\) "
                  r"scales as N\^([0-9.]+) \(95 % CI \[([0-9.-]+), ([0-9.-]+)\]", html)
    assert m, "headline sentence missing"
    impl, alpha, lo, hi = m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(4))
    row = fits[(fits["impl"] == impl) & (fits["mode"] == "fwd") & (fits["dtype"] == "float32")
               & fits["variant"].isna() & (fits["shape"] == "B8_d512")].iloc[0]
    assert (alpha, lo, hi) == (round(row["alpha"], 2), round(row["alpha_lo"], 2), round(row["alpha_hi"], 2))
    # re-fit the same series straight from the database, over the stated fit range
    with sqlite3.connect(fixture_db) as con:
        db = pd.read_sql("SELECT n, time_median_s FROM results WHERE run_id = 2 AND impl = ? AND mode = 'fwd' AND "
                         "status = 'ok' AND dtype = 'float32' AND sparsity = 0 AND options_json = '{}' AND "
                         "batch = 8 AND d = 512", con, params=(impl,))
    db = db[(db["n"] >= row["n_lo"]) & (db["n"] <= row["n_hi"])]
    assert fit_power_law(db["n"].to_numpy(float), db["time_median_s"].to_numpy()).alpha == pytest.approx(row["alpha"])
    # the attention exponent is stated too
    assert re.search(r"Attention: attention_sdpa_flash bf16 as N\^1\.9\d", html)
    # every case without a speed is listed
    with sqlite3.connect(fixture_db) as con:
        bad = con.execute("SELECT count(*) FROM results WHERE run_id = 2 AND status != 'ok'").fetchone()[0]
    assert len(pd.read_csv(rendered.parent / "data" / "failures.csv")) == bad
    for status in ("incorrect", "oom", "timeout", "skipped"):
        assert f"<td>{status}</td>" in html


def test_rendered_page_is_complete(rendered: Path) -> None:
    html = rendered.read_text()
    assert "SYNTHETIC fixture data" in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 8
    for src in srcs:
        f = rendered.parent / src
        assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    for section in ("summary", "scaling", "crossovers", "roofline", "energy", "pareto", "sparsity", "tuning",
                    "comparison", "failures", "environment"):
        assert f'<section id="{section}">' in html
    assert "No comparison requested" not in html and "No tuning data in this run" not in html
    assert "CAPPED" in html  # the power-capped trials are flagged
    assert "window=16" in html and "gauss=table" in html  # LUT windows and LNS variants on the Pareto table
    assert "OOM from N = 64k" in html


def _tiny_db(path: Path) -> Path:
    """Three ok timings of one implementation and one crash: most report sections have no data."""
    with Store(path) as st:
        run = st.start_run("quick", "cpu", {"gpu": None, "git_sha": "abc", "torch": "x"}, label="tiny")
        for n in (64, 256, 1024):
            st.add_result(run, {"case_id": f"thomas|N{n}|fwd", "impl": "thomas", "kind": "bk", "n": n, "batch": 4,
                                "dtype": "float64", "mode": "fwd", "device": "cpu", "status": "ok",
                                "time_median_s": 1e-5 * n, "rel_err": 1e-15})
        st.add_result(run, {"case_id": "lns|N64|fwd", "impl": "lns", "kind": "bk", "n": 64, "batch": 4,
                            "mode": "fwd", "device": "cpu", "status": "crash", "reason": "boom"})
        st.finish_run(run)
    return path


def test_sparse_database_says_what_is_missing(tmp_path: Path) -> None:
    db = _tiny_db(tmp_path / "sparse.db")
    out = build_report([db], tmp_path / "out", reps=100, use_registry=False)
    html = out.read_text()
    for text in ("No energy measurements", "No tuning data in this run", "No comparison requested",
                 "No crossover table", "No sparsity sweep", "No accuracy–speed data", "boom"):
        assert text in html, text
    assert "SYNTHETIC" not in html


def test_old_schema_without_new_columns_still_renders(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, suite TEXT, device TEXT, status TEXT)")
    con.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, run_id INTEGER, impl TEXT, kind TEXT, n INTEGER, "
                "mode TEXT, status TEXT, time_median_s REAL)")
    con.execute("INSERT INTO runs VALUES (1, 'old', 'cpu', 'finished')")
    for i, n in enumerate((128, 512, 2048)):
        con.execute("INSERT INTO results VALUES (?, 1, 'thomas', 'bk', ?, 'fwd', 'ok', ?)", (i + 1, n, 2e-6 * n))
    con.commit()
    con.close()
    out = build_report([db], tmp_path / "out", reps=100, use_registry=False)
    fits = pd.read_csv(out.parent / "data" / "fits.csv")
    assert fits.loc[0, "alpha"] == pytest.approx(1.0)


def test_cli_report_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bkbench.harness.cli import main

    db = _tiny_db(tmp_path / "tiny.db")
    out = str(tmp_path / "r")
    assert main(["report", "--db", str(db), "--run", "1", "--reps", "100", "--embed", "--out", out]) == 0
    html = (tmp_path / "r" / "index.html").read_text()
    assert 'src="data:image/png;base64,' in html and not (tmp_path / "r" / "figures").exists()
    assert main(["report", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "x")]) == 2
    assert "db:" in capsys.readouterr().err
    assert main(["report", "--db", str(db), "--compare", "1", "1", "--out", str(tmp_path / "y")]) == 2
    assert "compare: RUN_A and RUN_B are the same run" in capsys.readouterr().err
    assert main(["report", "--db", str(db), "--run", "7", "--out", str(tmp_path / "z")]) == 2
    assert "run: no run named '7'" in capsys.readouterr().err


def test_packaged_triton_fused_tables_feed_the_tuning_section():
    """The shipped tables live beside the kernel (kernels/bk/data); the report reads the ones of its GPUs (regression:
    after they moved, the H100 report lost its tuned-vs-default rows)."""
    from bkbench.harness.report import packaged_tuning_docs
    from bkbench.harness.report.analysis import tuning_from_json

    docs = packaged_tuning_docs({"NVIDIA H100 80GB HBM3"})
    assert [name for name, _ in docs] == ["triton_fused_h100.json"]
    rows, _ = tuning_from_json(docs)
    assert len(rows[rows["mode"] == "fwd"]) >= 10 and set(rows["gpu"]) == {"NVIDIA H100 80GB HBM3"}
    assert packaged_tuning_docs({"some other GPU"}) == []
