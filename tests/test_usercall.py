"""The harness times the call users make (issue 22): the headline of a BK-core row is
``bkbench.bk_core(a, b, c, z, impl=...)`` on inputs as a user holds them, the bare kernel is a second metric,
each is counted with its own ideal bytes, a wrong user call gets no speed, and the report shows both."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import bkbench
from bkbench.harness import benchcase
from bkbench.harness.timing import TimingConfig
from bkbench.harness.usercall import kernel_metrics
from bkbench.registry import Registry, default_registry


def _spec(**kw):
    from bkbench.harness.suites import CaseSpec

    base = dict(suite="t", group="g", impl="thomas", kind="bk", n=40, batch=2, d=3, dtype="float32", sparsity=0.0,
                mode="fwd", options={}, timing="cpu", device="cpu")
    base.update(kw)
    return CaseSpec(**base)


def _prepare(spec, registry=None):
    from bkbench.harness.workloads import prepare

    return prepare(spec, registry or default_registry())


class _Spy:
    """Wraps bkbench.bk_core and records the arguments of every call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, scale: float = 1.0) -> None:
        self.calls: list[tuple] = []
        self.real = bkbench.bk_core
        self.scale = scale
        self.__signature__ = inspect.signature(self.real)  # what no_check_kwargs reads
        monkeypatch.setattr(bkbench, "bk_core", self)

    def __call__(self, a, b, c, z=1j, *, impl="auto", **kw):
        self.calls.append((a, b, c, z, impl, kw))
        g = self.real(a, b, c, z, impl=impl, **kw)
        return g * self.scale if self.scale != 1.0 else g


# -- the suite runner's workload ---------------------------------------------------------------------------------


def test_the_headline_is_the_user_call_on_the_inputs_a_user_holds(monkeypatch):
    import bkbench.validate as validate
    from bkbench.harness.workloads import bk_inputs, bk_problem

    spy = _Spy(monkeypatch)
    wl = _prepare(_spec())
    assert wl.info["timed_call"] == "bk_core"
    g = wl.fn()
    (a, b, c, z, impl, kw), = spy.calls
    inp, _ = bk_inputs(bk_problem(_spec()))  # the seeded inputs the check reads
    assert a is inp.a and b is inp.b and c is inp.c and z == 1j and impl == "thomas"
    assert tuple(a.shape) == (2, 3, 40) and tuple(b.shape) == (2, 3, 39) and b is not c  # as a user holds them
    assert isinstance(z, complex) and g.shape == (2, 3, 40)
    assert kw.get("check", kw.get("check_finite")) is False  # value checks (host syncs) off

    def boom(*args, **kwargs):
        raise AssertionError("validation ran inside the bare kernel's timed call")

    monkeypatch.setattr(validate, "normalize", boom)
    monkeypatch.setattr(validate, "call_args", boom)
    monkeypatch.setattr("bkbench.eager.call_args", boom)
    gk = wl.kernel.fn()  # the bare kernel: prepared inputs, no validation
    assert gk.shape == (6, 40) and gk.dtype == torch.complex64 and len(spy.calls) == 1
    assert torch.allclose(gk, g.reshape(6, 40))


@pytest.mark.parametrize(("kw", "call_per_el", "kernel_per_el"), [
    ({}, 4 + 4 + 4 + 8, 4 + 4 + 8),  # separate fp32 b, c: 20 B vs a + k + G: 16 B
    ({"problem": {"coupling": "scalar"}}, 4 + 8, 4 + 8),  # numbers cost nothing; uniform k is not read
    ({"dtype": "bfloat16"}, 2 + 2 + 2 + 8, 4 + 4 + 8),  # bf16 a, b, c at bf16 size; the kernel gets fp32
])
def test_each_callable_is_counted_with_its_own_ideal_bytes(kw, call_per_el, kernel_per_el):
    wl = _prepare(_spec(n=1000, batch=2, d=2, **kw))
    chains, n = 4, 1000
    assert wl.model.ideal_bytes == pytest.approx(chains * n * call_per_el, rel=2e-3)
    assert wl.kernel.model.ideal_bytes == pytest.approx(chains * n * kernel_per_el, rel=2e-3)
    exact = benchcase.call_ideal_bytes(benchcase.make_inputs(benchcase.make_problem(4, n, "float32")),
                                       torch.complex64)
    assert exact == 4 * n * 4 + 2 * 4 * (n - 1) * 4 + 4 * n * 8


def test_fwd_bwd_user_call_resets_grad_and_backpropagates_through_bk_core(monkeypatch):
    spy = _Spy(monkeypatch)
    wl = _prepare(_spec(mode="fwd+bwd", n=300))
    g1, ga1 = wl.fn()
    g2, ga2 = wl.fn()
    assert torch.equal(ga1, ga2)  # .grad reset between calls: nothing accumulated
    assert ga1.shape == (2, 3, 300) and len(spy.calls) == 2 and spy.calls[0][0].requires_grad
    gk, gak = wl.kernel.fn()
    assert torch.allclose(gak.reshape(ga1.shape), ga1, rtol=1e-4, atol=1e-6)
    assert wl.model.ideal_bytes > wl.kernel.model.ideal_bytes


def test_a_wrong_user_call_gets_no_speed_even_with_a_right_kernel(monkeypatch):
    """Regression: the check used to run the bare kernel only, so a bug between bk_core and the kernel (here a
    planted 1 % error in the public call) went unnoticed while the headline timed that call."""
    _Spy(monkeypatch, scale=1.01)
    chk = _prepare(_spec()).check()
    assert not chk.passed and "user call bk_core" in chk.detail and chk.rel_err > 1e-3, chk
    chk = _prepare(_spec(mode="fwd+bwd", impl="assoc_scan")).check()
    assert not chk.passed and "user call" in chk.detail, chk


def test_a_wrong_kernel_still_fails_first():
    reg = Registry()

    @reg.register("half_wrong", kind="bk", devices=("cpu",), dtypes=(torch.float32,))
    def half_wrong(a, k, z):
        g = default_registry().get("thomas").fn(a, k, z)
        g[-1, -1] = g[-1, -1] * 1.01
        return g

    chk = _prepare(_spec(impl="half_wrong", batch=64, d=2), reg).check()
    assert not chk.passed and "user call" not in chk.detail and chk.rel_err > 1e-3


def test_passing_check_names_both_paths():
    chk = _prepare(_spec(check_seeds=[1])).check()
    assert chk.passed and "user call" in chk.scope and "seeds 0,1" in chk.scope, chk


def test_no_check_kwargs_follows_the_installed_api():
    def new(a, b, c, z=1j, *, impl="auto", check=None, registry=None, **options): ...

    def old(a, b, c, z=1j, *, impl="auto", registry=None, check_finite=True, **options): ...

    def neither(a, b, c, z=1j, *, impl="auto", **options): ...

    assert benchcase.no_check_kwargs(new) == {"check": False}
    assert benchcase.no_check_kwargs(old) == {"check_finite": False}
    assert benchcase.no_check_kwargs(neither) == {}
    assert benchcase.no_check_kwargs(bkbench.bk_core) in ({"check": False}, {"check_finite": False})


def test_kernel_metrics_are_prefixed_and_a_failure_keeps_the_headline():
    wl = _prepare(_spec())
    cfg = TimingConfig(mode="cpu", budget_s=0.05, warmup_s=0.0, min_reps=3, min_warmup_calls=0,
                       per_call_hint_s=10.0)  # the headline's hint must not skip the kernel's own warm-up
    cols = kernel_metrics(wl, cfg, "cpu", 10.0)
    assert cols["kernel_time_median_s"] > 0 and cols["kernel_ideal_bytes"] == int(wl.kernel.model.ideal_bytes)
    assert cols["kernel_roofline_pct"] == pytest.approx(100 * cols["kernel_gbps"] / 10.0)
    assert all(k.startswith("kernel_") for k in cols)

    class NoKernel:
        kernel = None

    assert kernel_metrics(NoKernel(), cfg, "cpu", None) == {}

    def broken():
        raise RuntimeError("kernel exploded")

    wl.kernel.fn = broken
    assert kernel_metrics(wl, cfg, "cpu", None) == {"kernel_error": "RuntimeError: kernel exploded"}


def test_worker_row_holds_both_numbers():
    from bkbench.harness.worker import run_case

    spec = _spec(budget_s=0.05, warmup_s=0.0, min_reps=3)
    row, fatal = run_case(spec, default_registry(), copy_bandwidth_gbs=10.0)
    assert row["status"] == "ok" and not fatal, row
    assert row["time_median_s"] > 0 and row["kernel_time_median_s"] > 0
    assert row["ideal_bytes"] > row["kernel_ideal_bytes"]
    assert row["workload"]["timed_call"] == "bk_core"
    base, fatal = run_case(_spec(impl="attention_naive", kind="attention", n=16, batch=1, d=64, budget_s=0.05,
                                 warmup_s=0.0, min_reps=3), default_registry())
    assert not any(k.startswith("kernel_") for k in base)  # baselines: one number, their user-facing call


def test_warm_case_compiles_the_user_call_and_the_bare_kernel():
    """The warm-up makes every call that the timed run compiles: the user call and the bare kernel (the check
    and the kernel_* metrics call it on prepared inputs). Regression: only the user call was warmed, and on the
    H200 the first triton_fused case then compiled its bare kernel for 21 s inside the timed worker."""
    from bkbench.harness.worker import warm_case

    reg = Registry()
    calls: list[tuple[bool, bool]] = []

    @reg.register("counted", kind="bk", devices=("cpu",), dtypes=(torch.float32,), differentiable=True)
    def counted(a, k, z):
        calls.append((torch.is_grad_enabled(), a.requires_grad))
        return default_registry().get("thomas").fn(a, k, z)

    row, fatal = warm_case(_spec(impl="counted"), reg)
    assert row["status"] == "ok" and not fatal and row["compile_s"] > 0, row
    assert len(calls) == 2  # bk_core(..., impl="counted") under no_grad, then the bare kernel
    calls.clear()
    row, fatal = warm_case(_spec(impl="counted", mode="fwd+bwd"), reg)
    assert row["status"] == "ok" and not fatal, row
    assert len(calls) == 2 and all(grad for grad, _ in calls)
    base, fatal = warm_case(_spec(impl="attention_naive", kind="attention", n=16, batch=1, d=64),
                            default_registry())
    assert base["status"] == "ok" and not fatal, base  # baselines have no bare kernel: one call


# -- benchcase (asv, pytest-benchmark, premerge) -------------------------------------------------------------------


def test_benchcase_times_the_user_call_and_keeps_the_bare_kernel(monkeypatch):
    spy = _Spy(monkeypatch)
    case = benchcase.prepare(benchcase.find("thomas"), benchcase.make_problem(3, 50), warm=False)
    assert case.fn().shape == (3, 50) and len(spy.calls) == 1
    assert case.kernel_fn().shape == (3, 50) and len(spy.calls) == 1
    assert case.ideal_bytes == 3 * 50 * 4 + 2 * 3 * 49 * 4 + 3 * 50 * 8
    assert case.kernel_ideal_bytes == benchcase.ideal_bytes(3, 50, torch.float32, None, torch.complex64) + 3 * 49 * 4
    assert benchcase.relative_error(case) < 1e-5 and benchcase.relative_error(case, target="kernel") < 1e-5
    assert benchcase.measure(case, budget_s=0.02, min_reps=3, target="kernel").median > 0
    with pytest.raises(ValueError, match="target"):
        case.callable("bogus")


def test_premerge_worker_compares_the_call_and_records_the_kernel():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_pmw_test", Path(benchcase.__file__).with_name(
        "premerge_worker.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    w = mod.Worker()
    ans = w.prepare({"impl": "thomas", "batch": 2, "n": 64, "dtype": "float32", "device": "cpu"})
    assert ans["skip"] is None and ans["kernel_median_s"] > 0 and ans["per_call_s"] > 0
    assert ans["call_ideal_bytes"] > ans["kernel_ideal_bytes"]
    assert len(w.time({"key": ans["key"], "calls": 3})["samples"]) == 3
    assert len(w.time({"key": ans["key"], "calls": 2, "target": "kernel"})["samples"]) == 2


# -- the report ----------------------------------------------------------------------------------------------------


def _usercall_db(path: Path) -> Path:
    """Run 1: bare-kernel rows only (before the harness timed the user call). Run 2: user call + kernel_*."""
    from bkbench.store import Store

    with Store(path) as st:
        env = {"gpu": "SYNTHETIC test GPU", "git_sha": "abc", "copy_bandwidth_gbs": 1000.0}
        old = st.start_run("quick", "cuda", env, label="old")
        new = st.start_run("quick", "cuda", env, label="new")
        for n in (1024, 4096, 16384):
            kernel_t = 1e-5 + 1e-9 * n
            for run, impl in ((old, "assoc_scan"), (new, "thomas")):
                row = {"case_id": f"{impl}|N{n}|fwd", "impl": impl, "kind": "bk", "n": n, "batch": 8, "d": 1,
                       "dtype": "float32", "mode": "fwd", "device": "cuda", "status": "ok",
                       "time_median_s": kernel_t, "ideal_bytes": 16 * 8 * n, "rel_err": 1e-7}
                if run == new:
                    row.update(time_median_s=kernel_t + 50e-6, ideal_bytes=20 * 8 * n,
                               workload={"timed_call": "bk_core"}, kernel_time_median_s=kernel_t,
                               kernel_ideal_bytes=16 * 8 * n)
                st.add_result(run, row)
        st.finish_run(old)
        st.finish_run(new)
    return path


def test_report_labels_both_numbers_and_the_overhead(tmp_path):
    from bkbench.harness.report import build_report
    from bkbench.harness.report.data import load
    from bkbench.harness.report.usercall import notes, overhead_rows

    db = _usercall_db(tmp_path / "uc.db")
    df = load([db]).df
    assert set(df.loc[df["impl"] == "thomas", "timed"]) == {"user call (bk_core)"}
    assert set(df.loc[df["impl"] == "assoc_scan", "timed"]) == {"bare kernel"}
    rows = overhead_rows(df)
    assert list(rows["impl"].unique()) == ["thomas"] and len(rows) == 3
    assert rows["overhead_s"].to_numpy() == pytest.approx([50e-6] * 3)
    big = rows.iloc[-1]
    assert big["ratio"] == pytest.approx((1e-5 + 1e-9 * 16384 + 50e-6) / (1e-5 + 1e-9 * 16384))
    assert big["call_pct"] == pytest.approx(100 * 20 * 8 * 16384 / (1e-5 + 1e-9 * 16384 + 50e-6) / 1e9 / 1000)
    assert big["kernel_pct"] == pytest.approx(100 * 16 * 8 * 16384 / (1e-5 + 1e-9 * 16384) / 1e9 / 1000)
    assert any("mix two kinds" in s for s in notes(df))
    assert any("Every BK-core time" in s for s in notes(df[df["impl"] == "assoc_scan"]))
    assert notes(df[df["impl"] == "thomas"]) == []

    out = build_report([db], tmp_path / "out", reps=100, use_registry=False)
    html = out.read_text()
    assert 'id="usercall"' in html and re.search(r'figures/usercall[^"]*\.png', html)
    assert "<td>user call (bk_core)</td>" in html and "<td>bare kernel</td>" in html  # roofline "timed" column
    assert re.search(r"<td>\+50(\.0)? µs</td>", html)  # the overhead, signed
    assert "mix two kinds" in html
    csv = pd.read_csv(out.parent / "data" / "usercall.csv")
    assert len(csv) == 3 and set(csv["impl"]) == {"thomas"}


def test_report_without_both_timings_says_so(tmp_path):
    from bkbench.harness.report import build_report

    db = _usercall_db(tmp_path / "uc.db")
    out = build_report([db], tmp_path / "out", runs=["1"], reps=100, use_registry=False)
    html = out.read_text()
    assert "No case holds both timings" in html and "Every BK-core time in this report" in html
    assert "figures/usercall.png" not in html
