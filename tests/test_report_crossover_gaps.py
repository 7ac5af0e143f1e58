"""The report's crossovers pick up the delta-rule baselines, and say why a pair has no N* (a declined or failed
mode) instead of leaving the baseline out. SYNTHETIC numbers, written the way the runner writes rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bkbench.harness.report import build_report
from bkbench.harness.report.analysis import analyze
from bkbench.harness.report.crossover_gaps import gap_rows, with_gaps
from bkbench.harness.report.data import load
from bkbench.kernels.ssm._fla_common import HOPPER_GATED_BWD
from bkbench.store import Store
from tests.fixtures_report import _add, _env, _timed_row

NS = [256, 1024, 4096, 16384]
REFUSAL = HOPPER_GATED_BWD.format(op="chunk_gated_delta_rule", triton="3.6.0")


def _db(path: Path) -> Path:
    rng = np.random.default_rng(5)
    with Store(path) as store:
        run = store.start_run("baselines", "cuda", _env("gaps0001", "SYNTHETIC"), {"suite": "baselines"},
                              label="SYNTHETIC - not a measurement")
        for n in NS:
            for mode, f in (("fwd", 1.0), ("fwd+bwd", 3.0)):
                t_bk = f * (2e-5 + 2e-9 * n)
                _add(store, run, impl="triton_fused", kind="bk", n=n, dtype="float32", mode=mode, status="ok",
                     b=8, d=256, group="bk-widths", **_timed_row(rng, t_bk, None, 8 * 256 * n, None))
                for impl, scale in (("ssm_fla_gated_deltanet", 1.0), ("ssm_fla_kda", 1.3), ("ssm_fla_rwkv7", 1.6)):
                    t = f * scale * (3e-4 + 1e-9 * n)  # a launch floor: the BK-core is faster at every N
                    common = dict(impl=impl, kind="ssm", n=n, dtype="bfloat16", mode=mode, b=8, d=256,
                                  group="baselines-widths")
                    if mode == "fwd+bwd" and impl == "ssm_fla_gated_deltanet":
                        _add(store, run, status="skipped", reason=f"{impl}: {REFUSAL}", **common)
                    elif mode == "fwd+bwd" and impl == "ssm_fla_rwkv7":
                        _add(store, run, status="crash", reason="during first call: CUDA error [synthetic]", **common)
                    else:
                        _add(store, run, status="ok", **common, **_timed_row(rng, t, None, 8 * 256 * n, None))
                _add(store, run, impl="ssm_fla_delta_rule", kind="ssm", n=n, dtype="float32", mode=mode,
                     status="skipped", reason="ssm_fla_delta_rule: no fp32 support", b=8, d=256,
                     group="baselines-widths-fp32")
        store.finish_run(run)
    return path


def test_new_baselines_enter_the_crossovers_and_gaps_say_why(tmp_path: Path) -> None:
    an = analyze(load([_db(tmp_path / "gaps.db")]), reps=100, use_registry=False)
    df = an.crossover_df.set_index(["mode", "baseline"])
    for impl in ("ssm_fla_gated_deltanet", "ssm_fla_kda", "ssm_fla_rwkv7"):
        assert df.loc[("fwd", f"{impl} bf16"), "state"] == "faster"
    assert df.loc[("fwd+bwd", "ssm_fla_kda bf16"), "state"] == "faster"
    gdn = df.loc[("fwd+bwd", "ssm_fla_gated_deltanet bf16")]
    assert gdn["state"] == "declined" and gdn["text"].startswith("declined: ") and "#640" in gdn["text"]
    rwkv = df.loc[("fwd+bwd", "ssm_fla_rwkv7 bf16")]
    assert rwkv["state"] == "failed" and rwkv["text"].startswith("crash: during first call")
    assert not an.crossover_df["baseline"].str.startswith("ssm_fla_delta_rule").any()  # never ran: not listed
    assert (an.crossover_df["bk"] == "triton_fused f32").all()


def test_gap_rows_are_empty_without_declines_and_keep_the_table(tmp_path: Path) -> None:
    an = analyze(load([_db(tmp_path / "gaps.db")]), reps=100, use_registry=False)
    ok_only = an.loaded.df[an.loaded.df["status"] == "ok"]
    assert gap_rows(ok_only, an.series).empty
    table = pd.DataFrame([{"state": "faster"}])
    assert with_gaps(table, ok_only, an.series) is table


def test_report_page_shows_the_reason_in_the_crossover_matrix(tmp_path: Path) -> None:
    index = build_report([_db(tmp_path / "gaps.db")], tmp_path / "report", reps=100, use_registry=False)
    html = index.read_text()
    assert "ssm_fla_kda bf16" in html and "declined: ssm_fla_gated_deltanet: fla-core refuses the backward" in html
