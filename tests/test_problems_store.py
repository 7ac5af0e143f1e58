"""Problem specs are declarative and reproducible; the store commits rows one by one."""

import sqlite3

import pytest
import torch

import bkbench.harness.problems as problems
from bkbench.harness.problems import Problem, draw, make_inputs
from bkbench.store import Store


def test_case_keys_are_self_describing():
    assert Problem(batch=(64,), n=4096, dtype="float32", sparsity=0.3, z=1j).key == "B64_N4096_f32_s0.3_zi1"
    assert Problem(batch=(2, 3), n=5, dtype="float64", z=0.5 + 0.1j, coupling="random").key == \
        "B2x3_N5_f64_z0.5+0.1i_krand"


def test_inputs_are_deterministic_and_dtype_independent():
    p = Problem(batch=(3,), n=20, dtype="float64", coupling="random", sparsity=0.4, seed=5)
    x, y = make_inputs(p), make_inputs(p)
    assert torch.equal(x.a, y.a) and torch.equal(x.b, y.b)
    f = make_inputs(p.with_(dtype="float32"))
    assert torch.allclose(f.a.double(), x.a, rtol=1e-6)
    assert make_inputs(p.with_(seed=6)).a.ne(x.a).any()


def test_large_draws_are_chunked_deterministic_and_device_independent(monkeypatch):
    # below the threshold: exactly the sequential generator's numbers
    gen = torch.Generator().manual_seed(5)
    small = draw("normal", (3, 7), gen, 5, 1)
    assert torch.equal(small, torch.randn((3, 7), generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    # above it (threshold lowered so the test stays small): chunked, the same whatever the thread count
    monkeypatch.setattr(problems, "PARALLEL_DRAW_MIN", 64)
    monkeypatch.setattr(problems, "DRAW_CHUNK", 10)
    one = draw("normal", (9, 11), torch.Generator().manual_seed(0), 5, 1)
    monkeypatch.setattr(problems.os, "cpu_count", lambda: 1)
    again = draw("normal", (9, 11), torch.Generator().manual_seed(123), 5, 1)
    assert torch.equal(one, again)  # gen is not used on this path
    assert one.shape == (9, 11) and one.dtype == torch.float64
    assert not torch.equal(one, draw("normal", (9, 11), gen, 5, 2))  # another stream
    assert not torch.equal(one, draw("normal", (9, 11), gen, 6, 1))  # another seed
    chunks = one.flatten().split(10)
    assert len({tuple(c[:5].tolist()) for c in chunks}) == len(chunks)  # every chunk its own generator
    assert abs(float(one.mean())) < 0.3 and 0.7 < float(one.std()) < 1.3
    u = draw("uniform", (9, 11), gen, 5, 3)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    with pytest.raises(ValueError, match="kind"):
        draw("cauchy", (9, 11), gen, 5, 1)
    # the problem's inputs take the chunked path and stay the same on every dtype
    p = Problem(batch=(4,), n=40, coupling="random", sparsity=0.2, negative=0.1)
    a32, a64 = make_inputs(p).a, make_inputs(p.with_(dtype="float64")).a
    assert torch.equal(a32, a64.float())
    inp = make_inputs(p)
    assert torch.equal(inp.a, make_inputs(p).a) and torch.equal(inp.c, make_inputs(p).c)
    assert bool((inp.b == 0).any()) and bool((inp.c < 0).any())


def test_sparsity_zeroes_that_fraction_of_couplings():
    inp = make_inputs(Problem(batch=(50,), n=401, sparsity=0.3, seed=1))
    frac = float((inp.b * inp.c == 0).double().mean())
    assert 0.27 < frac < 0.33


def test_noncontiguous_and_scalar_inputs():
    inp = make_inputs(Problem(n=10, noncontiguous=True))
    assert not inp.a.is_contiguous()
    inp = make_inputs(Problem(n=10, coupling="scalar"))
    assert inp.b == 1.0 and inp.c == 1.0


def test_problem_validation():
    with pytest.raises(ValueError, match="^n:"):
        Problem(n=0)
    with pytest.raises(ValueError, match="^dtype:"):
        Problem(dtype="int8")
    p = Problem(batch=(2,), n=9, z=0.5 + 0.1j, sparsity=0.2)
    assert Problem.from_dict(p.to_dict()) == p


def test_store_commits_each_row(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as s:
        run = s.start_run("quick", "cpu", {"git_sha": "abc", "gpu": None})
        s.add_result(run, {"case_id": "c1", "impl": "thomas", "status": "ok", "time_median_s": 1e-3,
                           "custom_metric": 7})
        # another connection sees it immediately: nothing is held back
        rows = sqlite3.connect(path).execute("SELECT case_id, status FROM results").fetchall()
        assert rows == [("c1", "ok")]
        with pytest.raises(ValueError, match="status"):
            s.add_result(run, {"case_id": "c2", "status": "great"})
        assert s.done_case_ids(run) == {"c1"}
        df = s.dataframe()
        assert df.loc[0, "git_sha"] == "abc" and '"custom_metric": 7' in df.loc[0, "metrics_json"]
        s.finish_run(run)
        assert s.run(run)["status"] == "finished"


def test_git_sha_override_names_the_copied_commit(monkeypatch):
    """A tree copied to another machine may carry a stale .git: BKBENCH_GIT_SHA, when set, is what is recorded."""
    from bkbench.harness.env import git_sha

    monkeypatch.delenv("BKBENCH_GIT_SHA", raising=False)
    real = git_sha()
    monkeypatch.setenv("BKBENCH_GIT_SHA", "3bf8bd5")
    assert git_sha() == "3bf8bd5"
    monkeypatch.delenv("BKBENCH_GIT_SHA")
    assert git_sha() == real
