"""The tuner's parallel compile (bkbench tune --jobs): jobs, errors, the pool, the staged search over problems."""

from __future__ import annotations

import pytest
import torch

from bkbench.harness import tune_compile, tuning
from bkbench.harness.cli import main as cli_main
from bkbench.kernels.bk._cplx_triton import interpreting

PROB = tuning.TuneProblem(2, 12, torch.float32, False, device="cpu")


cpu_interpreter = pytest.mark.skipif(not interpreting(), reason="CPU problems need TRITON_INTERPRET=1")


@cpu_interpreter
def test_a_job_launches_its_config_once_and_reports_what_does_not_compile():
    fwd = tuning.stage1()[0]
    assert tune_compile.job("fwd", fwd, PROB) == tune_compile.job("fwd", dict(reversed(fwd.items())), PROB)
    assert tune_compile.compile_job(tune_compile.job("fwd", fwd, PROB)) is None
    assert tune_compile.compile_job(tune_compile.job("bwd", tuning.bwd_space()[0], PROB)) is None
    uniform = tuning.TuneProblem(3, 7, torch.bfloat16, True, device="cpu")
    assert tune_compile.compile_job(tune_compile.job("fwd", fwd, uniform)) is None
    err = tune_compile.compile_job(tune_compile.job("fwd", {**fwd, "warps": 3}, PROB))
    assert "warps" in err and "2x12 float32" in err


@cpu_interpreter
def test_the_pool_compiles_distinct_jobs_and_returns_the_failures():
    good = tune_compile.job("fwd", tuning.stage1()[0], PROB)
    bad = tune_compile.job("fwd", {**tuning.stage1()[0], "seg": 48}, PROB)
    lines = []
    assert tune_compile.precompile([good, good, bad], workers=4, log=lines.append) == []  # CPU jobs: nothing to do
    errors = tune_compile.precompile([good, good, bad], workers=2, log=lines.append, cpu_jobs_too=True)
    assert len(errors) == 1 and "seg" in errors[0]
    assert "compiled 2 config(s) in 2 processes" in lines[-1]
    assert tune_compile.pool_size([good] * 3, 15) == 3 and tune_compile.pool_size([], 4) == 0


@cpu_interpreter
def test_tune_many_yields_checked_cached_entries_in_order(cache_dir):
    other = tuning.TuneProblem(1, 5, torch.bfloat16, True, device="cpu")
    got = list(tune_compile.tune_many([PROB, other], workers=1, budget_s=0.01, with_bwd=False, log=lambda s: None))
    assert [p for p, _ in got] == [PROB, other]
    cache = tuning.load_cache()
    for p, entry in got:
        assert entry["check_error"] < 2e-4 and entry["searched"] >= len(tuning.stage1())
        assert cache[tuning.key(tuning.gpu_name("cpu"), p.dtype, p.uniform, p.batch, p.n)]["config"] == entry["config"]


def test_tune_refuses_a_bad_job_count(capsys):
    assert cli_main(["tune", "--jobs", "0", "--dry-run"]) == 2
    assert "--jobs" in capsys.readouterr().err
