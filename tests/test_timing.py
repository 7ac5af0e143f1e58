"""Timing statistics, the adaptive repetition loop, CPU timing, energy (with a simulated counter), memory,
metrics plug-ins and the BK workload (validation outside the timed region, no grad accumulation)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from bkbench.harness import energy as en
from bkbench.harness import metrics
from bkbench.harness.memory import peak_memory
from bkbench.harness.problems import Problem, make_inputs
from bkbench.harness.reference import dense_grad_reference
from bkbench.harness.timing import TimingConfig, _adaptive, copy_bandwidth, measure, median_ci95, summarize, time_cpu

# -- statistics ----------------------------------------------------------------------------------------------------


def test_summarize_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=101)
    s = summarize(list(x))
    assert s.n == 101
    assert s.median == pytest.approx(np.median(x))
    assert s.p20 == pytest.approx(np.percentile(x, 20)) and s.p80 == pytest.approx(np.percentile(x, 80))
    assert s.iqr == pytest.approx(np.percentile(x, 75) - np.percentile(x, 25))
    assert s.mean == pytest.approx(x.mean()) and s.std == pytest.approx(x.std(ddof=1))
    assert s.min == x.min() and s.max == x.max()
    lo, hi = median_ci95(np.sort(x))
    assert lo <= s.median <= hi and s.ci95 == pytest.approx((hi - lo) / 2)


def test_median_ci_has_about_95_percent_coverage():
    rng = np.random.default_rng(1)
    true_median = math.log(2.0)  # exponential(1)
    hits = 0
    trials = 600
    for _ in range(trials):
        lo, hi = median_ci95(np.sort(rng.exponential(size=60)))
        hits += lo <= true_median <= hi
    assert 0.92 <= hits / trials <= 0.995


def test_ci_is_infinite_for_tiny_samples_and_shrinks_with_n():
    assert math.isinf(summarize([1.0, 2.0, 3.0]).ci95)
    rng = np.random.default_rng(2)
    small = summarize(list(1 + 0.1 * rng.standard_normal(20))).ci95
    large = summarize(list(1 + 0.1 * rng.standard_normal(2000))).ci95
    assert large < small / 4
    with pytest.raises(ValueError, match="samples"):
        summarize([])


# -- the adaptive loop ---------------------------------------------------------------------------------------------


def _fake(noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    calls = []

    def batch(n: int) -> list[float]:
        calls.append(n)
        return list(1e-3 * (1 + noise * rng.standard_normal(n)))

    return batch, calls


def test_adaptive_stops_when_ci_is_tight():
    batch, _ = _fake(0.001)
    samples, stop, _ = _adaptive(batch, 1e-6, TimingConfig(mode="cpu", min_reps=10, budget_s=10.0, rel_ci=0.01))
    assert stop == "ci" and 10 <= len(samples) <= 20


def test_adaptive_noisy_samples_run_until_budget_or_max_reps():
    batch, _ = _fake(0.5)
    cfg = TimingConfig(mode="cpu", min_reps=5, max_reps=40, budget_s=100.0, rel_ci=0.0001)
    samples, stop, _ = _adaptive(batch, 1e-6, cfg)
    assert stop == "max_reps" and len(samples) == 40

    def slow(n: int) -> list[float]:
        time.sleep(0.01 * n)
        return [0.01 * (1 + 0.3 * np.sin(i)) for i in range(n)]

    samples, stop, wall = _adaptive(slow, 0.01, TimingConfig(mode="cpu", min_reps=5, budget_s=0.15, rel_ci=1e-6))
    assert stop == "budget" and len(samples) >= 5 and wall < 1.0


def test_long_calls_use_the_long_floor():
    def batch(n: int) -> list[float]:
        return [1.0] * n

    cfg = TimingConfig(mode="cpu", min_reps=10, min_reps_long=3, budget_s=0.0, rel_ci=0.0)
    samples, stop, _ = _adaptive(batch, 1.0, cfg)
    assert len(samples) == 3 and stop == "budget"


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="mode"):
        TimingConfig(mode="hot")
    with pytest.raises(ValueError, match="min_reps"):
        TimingConfig(min_reps=0)
    with pytest.raises(ValueError, match="budget_s"):
        TimingConfig(budget_s=-1)


# -- CPU timing ----------------------------------------------------------------------------------------------------


def test_time_cpu_measures_a_known_delay():
    t = time_cpu(lambda: time.sleep(0.003), TimingConfig(mode="cpu", warmup_s=0.0, budget_s=0.1, min_reps=5))
    assert t.mode == "cpu" and t.stats.n == len(t.samples) >= 5
    assert 0.003 <= t.median < 0.05
    assert t.stats.p20 <= t.median <= t.stats.p80
    assert t.warmup_calls >= 1


def test_measure_refuses_cuda_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    with pytest.raises(ValueError, match="cuda"):
        measure(lambda: None, TimingConfig(), "cuda")
    with pytest.raises(ValueError, match="cuda"):
        copy_bandwidth("cuda")


def test_cpu_copy_bandwidth_is_positive():
    bw = copy_bandwidth("cpu", nbytes=8 * 1024 * 1024, budget_s=0.1)
    assert math.isfinite(bw) and bw > 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_modes_agree_on_a_large_copy():
    x = torch.randn(1 << 26, device="cuda")
    y = torch.empty_like(x)
    res = {m: measure(lambda: y.copy_(x), TimingConfig(mode=m, budget_s=0.3), "cuda")
           for m in ("cold", "warm", "graph")}
    assert res["graph"].unroll >= 1 and res["cold"].flush_bytes >= 256 * 1024 * 1024
    base = res["warm"].median
    for m in ("cold", "graph"):
        assert abs(res[m].median - base) / base < 0.2


# -- energy --------------------------------------------------------------------------------------------------------


class FakeCounter:
    """A counter that integrates a known power: ``idle_w`` while no call runs, ``busy_w`` during calls."""

    name = "fake"
    power_source = "instant"

    def __init__(self, idle_w: float = 50.0, busy_w: float = 250.0, reasons: int = 0) -> None:
        self.idle_w, self.busy_w, self.reasons = idle_w, busy_w, reasons
        self.t = time.perf_counter()
        self.e = 0.0
        self.busy = False

    def _advance(self) -> None:
        now = time.perf_counter()
        self.e += (self.busy_w if self.busy else self.idle_w) * (now - self.t)
        self.t = now

    def read_j(self) -> float:
        self._advance()
        return self.e

    def power_w(self) -> float:
        return self.busy_w if self.busy else self.idle_w

    def telemetry(self) -> dict:
        return {"sm_clock_mhz": 1980, "temp_c": 40, "power_limit_w": 700.0, "reasons": self.reasons}

    def sync(self) -> None:
        self._advance()

    def call(self) -> None:
        self._advance()
        self.busy = True
        time.sleep(0.002)
        self._advance()
        self.busy = False


def test_energy_protocol_with_a_simulated_counter():
    c = FakeCounter(reasons=0x4)
    cfg = en.EnergyConfig(window_s=0.3, trials=4, idle_s=0.2, warmup_s=0.05, settle_s=0.0, chunk_s=0.05,
                          sample_period_s=0.005, telemetry_period_s=0.05)
    r = en.measure_energy(c.call, device="cpu", per_call_s=0.002, elements=1000, tokens=10, cfg=cfg, counter=c)
    assert r.status == "ok" and len(r.trials) == 4
    assert r.power_idle_w == pytest.approx(50.0, rel=0.02)
    # nearly all of each window is busy: J per call ~ busy power x wall per call
    per_call_wall = np.median([t.seconds / t.calls for t in r.trials])
    assert r.j_per_call == pytest.approx(250.0 * per_call_wall, rel=0.15)
    assert r.dynamic_j_per_call == pytest.approx(r.j_per_call - 50.0 * per_call_wall, rel=0.05)
    assert r.j_per_element == pytest.approx(r.j_per_call / 1000) and r.j_per_token == pytest.approx(r.j_per_call / 10)
    for t in r.trials:
        assert t.seconds >= 0.3 and t.telemetry["power_capped"] and "sw_power_cap" in t.telemetry["throttle_reasons"]
        assert t.integral_j is not None and abs(t.counter_vs_integral) < 0.2
    assert r.power_capped_trials == 4
    cols = r.columns()
    assert cols["energy_status"] == "ok" and cols["energy_j_per_call"] == r.j_per_call


def test_energy_is_unavailable_with_a_reason_not_a_number(monkeypatch):
    def refuse(device):
        raise en.EnergyUnavailable("no counter here")

    monkeypatch.setattr(en, "open_counter", refuse)
    r = en.measure_energy(lambda: None, device="cpu", per_call_s=1e-3, elements=1)
    assert r.status == "unavailable: no counter here" and r.j_per_call is None and not r.trials
    assert r.columns()["energy_j_per_call"] is None


def test_energy_counters_say_why_they_are_missing():
    if not torch.cuda.is_available():
        with pytest.raises(en.EnergyUnavailable):
            en.open_counter("cuda")
    try:
        en.open_counter("cpu")
    except en.EnergyUnavailable as exc:
        assert "RAPL" in str(exc)


# -- memory --------------------------------------------------------------------------------------------------------


def test_memory_on_cpu_is_unavailable():
    m = peak_memory(lambda: torch.ones(10), "cpu")
    assert m.status.startswith("unavailable") and m.peak_bytes is None and m.extra_bytes is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_memory_peak_on_cuda_counts_the_call():
    m = peak_memory(lambda: torch.empty(1 << 24, device="cuda", dtype=torch.uint8), "cuda")
    assert m.status == "ok" and m.extra_bytes >= 1 << 24


# -- metrics -------------------------------------------------------------------------------------------------------


def _timing(median: float):
    from bkbench.harness.timing import Timing

    return Timing("cold", [median] * 7, summarize([median] * 7), True, "ci", 1, 0.0, 0.0)


def test_metrics_derive_throughput_and_never_invent():
    model = metrics.WorkModel(ideal_bytes=2e9, flops=1e12, elements=1000, tokens=10)
    out = metrics.compute(metrics.MetricContext(timing=_timing(1e-3), model=model, copy_bandwidth_gbs=4000.0))
    assert out["gbps"] == pytest.approx(2000.0) and out["roofline_pct"] == pytest.approx(50.0)
    assert out["tflops"] == pytest.approx(1000.0) and out["time_median_s"] == 1e-3
    assert out["elements_per_s"] == pytest.approx(1e6) and out["tokens_per_s"] == pytest.approx(1e4)
    assert metrics.compute(metrics.MetricContext()) == {}
    no_bw = metrics.compute(metrics.MetricContext(timing=_timing(1e-3), model=model))
    assert "roofline_pct" not in no_bw and no_bw["gbps"] == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute(metrics.MetricContext(), ["nope"])


def test_metrics_are_plugins():
    @metrics.metric("test_double_median")
    def double(ctx):
        return {"double_median": 2 * ctx.timing.median} if ctx.timing else {}

    try:
        assert metrics.compute(metrics.MetricContext(timing=_timing(0.5)), ["test_double_median"]) == {
            "double_median": 1.0}
    finally:
        metrics._METRICS.pop("test_double_median")


# -- workloads -----------------------------------------------------------------------------------------------------


def _spec(**kw):
    from bkbench.harness.suites import CaseSpec

    base = dict(suite="t", group="g", impl="thomas", kind="bk", n=40, batch=2, d=3, dtype="float32", sparsity=0.0,
                mode="fwd", options={}, timing="cpu", device="cpu")
    base.update(kw)
    return CaseSpec(**base)


def test_pivot_grad_reference_matches_dense_autograd():
    from bkbench.harness.reference import pivot_grad_reference

    for p in (Problem(batch=(3,), n=37, dtype="float64", coupling="random", sparsity=0.2, seed=3),
              Problem(batch=(2,), n=1, dtype="float64"), Problem(batch=(2,), n=2, dtype="float64", z_spread=0.4)):
        inp = make_inputs(p)
        gen = torch.Generator().manual_seed(5)
        gout = torch.complex(torch.randn(tuple(inp.a.shape), generator=gen, dtype=torch.float64),
                             torch.randn(tuple(inp.a.shape), generator=gen, dtype=torch.float64))
        ref, _ = dense_grad_reference(inp, gout)
        got = pivot_grad_reference(inp, gout)
        assert torch.allclose(got, ref.reshape(got.shape), rtol=1e-9, atol=1e-11)


def test_bk_workload_times_the_user_call_and_the_kernel_on_normalised_inputs(monkeypatch):
    import bkbench.validate as validate
    from bkbench.harness.workloads import prepare
    from bkbench.registry import default_registry

    wl = prepare(_spec(), default_registry())
    chk = wl.check()
    assert chk.passed and chk.rel_err < 1e-5 and "chains" in chk.scope
    assert wl.model.elements == 2 * 3 * 40 and wl.model.tokens == 2 * 40
    assert wl.model.ideal_bytes == 6 * 40 * 4 + 2 * 6 * 39 * 4 + 6 * 40 * 8  # user call: a, b, c read, G written
    assert wl.kernel.model.ideal_bytes == 6 * 40 * 4 + 6 * 39 * 4 + 6 * 8 + 6 * 40 * 8  # bare kernel: a, k, z, G
    assert wl.fn().shape == (2, 3, 40)  # the user call returns G in the user's shape

    def boom(*a, **k):
        raise AssertionError("validation ran inside the bare kernel's timed call")

    monkeypatch.setattr(validate, "normalize", boom)
    monkeypatch.setattr(validate, "call_args", boom)
    monkeypatch.setattr("bkbench.eager.call_args", boom)
    g = wl.kernel.fn()
    assert g.shape == (6, 40) and g.dtype == torch.complex64


def test_bk_fwd_bwd_does_not_accumulate_grad():
    from bkbench.harness.workloads import prepare
    from bkbench.registry import default_registry

    wl = prepare(_spec(mode="fwd+bwd", n=300), default_registry())
    chk = wl.check()
    assert chk.passed and "O(N) recurrences" in chk.scope, chk
    for fn in (wl.fn, wl.kernel.fn):  # the user call and the bare kernel
        g1, ga1 = fn()
        g2, ga2 = fn()
        assert torch.equal(ga1, ga2)  # the same gradient each call, nothing accumulated
    assert wl.model.flops == 2 * 28 * 6 * 300


def test_bk_bf16_gradient_tolerance_covers_the_rounding_of_grad_a_and_no_more():
    """grad_a of a bf16 leaf comes back in bf16: the check allows its unit roundoff (2^-8) on top of the float32
    tolerance, so an exact implementation passes and a gradient off by 1 % still fails."""
    from bkbench.harness.accuracy import grad_tolerance
    from bkbench.harness.workloads import prepare
    from bkbench.registry import Registry, default_registry

    assert grad_tolerance(torch.bfloat16) == pytest.approx(1e-3 + 2.0**-8)
    assert grad_tolerance(torch.float16) == pytest.approx(1e-3 + 2.0**-11)
    assert grad_tolerance(torch.float32) == 1e-3
    thomas = default_registry().get("thomas")
    reg = Registry()

    @reg.register("bf16_native", kind="bk", devices=("cpu",), dtypes=(torch.bfloat16,), differentiable=True)
    def bf16_native(a, k, z):  # takes the bf16 leaf itself, as triton_fused does on the GPU
        assert a.dtype == torch.bfloat16
        return thomas.fn(a.float(), k.float(), z)

    class _Scaled(torch.autograd.Function):  # the right G, a gradient 1 % too large
        @staticmethod
        def forward(ctx, g):
            return g.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * 1.01

    @reg.register("grad_off", kind="bk", devices=("cpu",), dtypes=(torch.bfloat16,), differentiable=True)
    def grad_off(a, k, z):
        return _Scaled.apply(bf16_native(a, k, z))

    for n in (40, 300):  # dense autograd and O(N) recurrence references
        chk = prepare(_spec(impl="bf16_native", mode="fwd+bwd", n=n, dtype="bfloat16"), reg).check()
        assert chk.passed and 1e-3 < chk.rel_err <= grad_tolerance(torch.bfloat16), chk
    chk = prepare(_spec(impl="grad_off", mode="fwd+bwd", dtype="bfloat16"), reg).check()
    assert not chk.passed and "gradient error" in chk.detail, chk


def test_bk_workload_skips_and_flags_wrong_results():
    from bkbench.harness.workloads import Skip, prepare
    from bkbench.registry import Registry, default_registry

    with pytest.raises(Skip, match="not differentiable"):
        prepare(_spec(impl="naive_loop", mode="fwd+bwd"), default_registry())
    reg = Registry()

    @reg.register("half_wrong", kind="bk", devices=("cpu",), dtypes=(torch.float32,))
    def half_wrong(a, k, z):
        g = default_registry().get("thomas").fn(a, k, z)
        g[-1, -1] = g[-1, -1] * 1.01  # one wrong element in the last chain
        return g

    chk = prepare(_spec(impl="half_wrong", batch=64, d=2), reg).check()
    assert not chk.passed and chk.rel_err > 1e-3  # the spread subset includes the last chain
