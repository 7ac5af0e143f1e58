"""Baselines (SSMs and attention): references, the check battery, sparsity patterns, models, layers, runner API."""

from __future__ import annotations

import math

import pytest
import torch

from bkbench.harness.baselines import (
    FORMS,
    Case,
    Declined,
    baseline,
    build_inputs,
    check,
    core_shapes,
    layer_model,
    model_for,
    prepare,
    prepare_layer,
    reference_output,
)
from bkbench.harness.baselines import references as refs
from bkbench.harness.baselines.models import attention_pairs, bk_core_model
from bkbench.kernels.attention import _block_sparsity as sp
from bkbench.registry import Registry, default_registry

BASELINES = {
    "ssm_selective_scan_ref": "ssm",
    "ssm_selective_scan_parallel": "ssm",
    "ssm_mamba_cuda": "ssm",
    "ssm_ssd_chunked": "ssm",
    "ssm_fla_ssd": "ssm",
    "ssm_fla_gla": "ssm",
    "attention_naive": "attention",
    "attention_sdpa_flash": "attention",
    "attention_sdpa_cudnn": "attention",
    "attention_sdpa_efficient": "attention",
    "attention_sdpa_math": "attention",
    "attention_flex_local": "attention",
    "attention_flex_random": "attention",
}
CPU_BASELINES = [
    "ssm_selective_scan_ref",
    "ssm_selective_scan_parallel",
    "ssm_ssd_chunked",
    "attention_naive",
    "attention_sdpa_math",
    "attention_flex_local",
    "attention_flex_random",
]


# -- registry and availability -----------------------------------------------------------------------
def test_every_baseline_is_registered_with_its_kind():
    reg = default_registry()
    assert not [f for f in reg.failures if "ssm_" in f.module or "attention_" in f.module]
    for name, kind in BASELINES.items():
        rec = reg.get(name)
        assert rec.kind == kind
        assert rec.module.startswith(f"bkbench.kernels.{kind}.")  # kernels/<family>/


@pytest.mark.skipif(torch.cuda.is_available(), reason="availability reasons on a machine without a GPU")
def test_unavailable_baselines_say_why_on_cpu():
    reg = default_registry()
    for name in ("attention_sdpa_flash", "attention_sdpa_cudnn", "attention_sdpa_efficient"):
        assert reg.get(name).unavailable_reason() == "needs CUDA"
    mamba = reg.get("ssm_mamba_cuda").unavailable_reason()
    assert mamba and ("mamba_ssm not installed" in mamba or "needs CUDA" in mamba)
    for name in ("ssm_fla_ssd", "ssm_fla_gla"):
        reason = reg.get(name).unavailable_reason()
        assert reason and ("fla-core not installed" in reason or "needs CUDA" in reason)
    declined = reg.get("attention_sdpa_flash").decline_reason(Case(B=1, N=8, d=64))
    assert declined and "cuda" in declined


# -- the battery ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CPU_BASELINES)
def test_battery_passes_on_cpu(name):
    results = check(name, "cpu", seeds=(0, 1), quick=True)
    fails = [f"{r.case} {r.key} {r.check}: {r.detail}" for r in results if r.status == "fail"]
    assert not fails, fails
    assert sum(r.status == "pass" for r in results) >= 6
    assert all(r.error is not None and math.isfinite(r.error) for r in results if r.status == "pass")


def _wrong_attention_registry(mode: str) -> Registry:
    reg = Registry()

    @reg.register("wrong_attention", kind="attention", devices=("cpu",), dtypes=(torch.float32,), differentiable=True)
    @baseline("attention", variant="materialized")
    def wrong_attention(q, k, v, causal=True, block_keep=None, block_size=None):
        if mode == "acausal":  # forgets the causal mask
            return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return out.masked_fill(torch.zeros_like(out, dtype=torch.bool).index_fill(-2, torch.tensor([0]), True),
                               float("nan"))

    return reg


@pytest.mark.parametrize("mode", ["acausal", "nan"])
def test_battery_fails_a_wrong_baseline(mode):
    reg = _wrong_attention_registry(mode)
    results = check("wrong_attention", "cpu", seeds=(0,), quick=True, registry=reg)
    fails = [r for r in results if r.status == "fail" and r.check == "value"]
    assert fails, "the battery must be able to fail"
    if mode == "nan":
        assert all(r.status == "fail" for r in results if r.check == "value")


def test_battery_skips_with_reason_when_declined():
    results = check("attention_sdpa_flash", "cpu", seeds=(0,), quick=True)
    assert results and all(r.status == "skip" and r.detail for r in results)


def test_gate_runs_the_baseline_battery():
    from bkbench.harness.gate import run_gate

    report = run_gate(impls=["attention_naive"], device="cpu", quick=True, seeds=[0])
    assert report.results and all(r.impl == "attention_naive" for r in report.results)
    assert not report.failures


# -- references and implementations beyond the battery ------------------------------------------------
def test_parallel_selective_scan_long_chain_fp32():
    case = Case(B=1, N=3000, d=4, state=8, seed=3)
    inputs = FORMS["selective_scan"].build(case)
    rec = default_registry().get("ssm_selective_scan_parallel")
    out = rec.fn(**inputs, chunk=64)
    ref = reference_output(rec, inputs)
    assert float((out.double() - ref).abs().max() / ref.abs().max()) < 2e-5


def test_chunked_ssd_many_chunks_fp64_matches_recurrence():
    case = Case(B=1, N=1001, d=64, dtype=torch.float64, state=8, seed=1)
    inputs = FORMS["ssd"].build(case)
    rec = default_registry().get("ssm_ssd_chunked")
    out = rec.fn(**inputs, chunk=16)  # 63 chunks, the last partial
    ref = reference_output(rec, inputs)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-12


def test_chunked_ssd_rejects_bad_chunk():
    inputs = FORMS["ssd"].build(Case(B=1, N=8, d=64, state=4))
    with pytest.raises(ValueError, match="chunk"):
        default_registry().get("ssm_ssd_chunked").fn(**inputs, chunk=0)


def test_selective_scan_reference_matches_closed_form_for_one_step_decay():
    # n = 1, constant dt: x_t = e^{dt A} x_{t-1} + dt B u  -> a geometric sum
    u = torch.ones(1, 1, 5, dtype=torch.float64)
    delta = torch.full((1, 1, 5), 0.5, dtype=torch.float64)
    A = torch.tensor([[-1.0]], dtype=torch.float64)
    B = torch.ones(1, 1, 5, dtype=torch.float64)
    C = torch.ones(1, 1, 5, dtype=torch.float64)
    y = refs.selective_scan_reference(u, delta, A, B, C)
    r = math.exp(-0.5)
    want = [0.5 * sum(r**j for j in range(t + 1)) for t in range(5)]
    assert torch.allclose(y[0, 0], torch.tensor(want, dtype=torch.float64), rtol=1e-14)


# -- block sparsity ------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("s", [0.0, 0.1, 0.5, 0.8])
def test_random_pattern_hits_the_sparsity(causal, s):
    nb = 16
    keep = sp.random_pattern(nb, s, causal, seed=7)
    dense = sp.dense_tiles(nb, causal)
    assert bool(torch.diagonal(keep).all()), "every diagonal tile is kept"
    assert not bool((keep & ~dense).any()), "never a tile the dense kernel would skip"
    assert abs(sp.achieved_sparsity(keep, causal) - s) <= 1.0 / float(dense.sum())


def test_random_pattern_caps_at_keeping_the_diagonal():
    keep = sp.random_pattern(4, 0.99, True, seed=0)
    assert torch.equal(keep, torch.eye(4, dtype=torch.bool))


@pytest.mark.parametrize("s", [0.3, 0.6, 0.9])
def test_local_pattern_is_the_closest_band(s):
    nb = 32
    keep = sp.local_pattern(nb, s, True)
    got = sp.achieved_sparsity(keep, True)
    for w in range(1, nb + 1):  # no band is closer to s
        qb, kb = torch.arange(nb)[:, None], torch.arange(nb)[None, :]
        band = (qb - kb >= 0) & (qb - kb < w)
        assert abs(got - s) <= abs(sp.achieved_sparsity(band, True) - s) + 1e-12


def test_flex_block_mask_holds_exactly_the_kept_tiles():
    keep = sp.make_pattern("random", 300, 32, 0.5, True, seed=2)
    bm = sp.flex_block_mask(keep, 300, 32, True, "cpu")
    assert sp.block_mask_tiles(bm) == int((keep & sp.dense_tiles(keep.shape[0], True)).sum())


@pytest.mark.parametrize("name", ["attention_flex_local", "attention_flex_random"])
def test_flex_sparse_output_is_masked_not_dense(name):
    case = Case(B=1, N=256, d=64, sparsity=0.6, seed=4)
    p = prepare(name, case, tile=32)
    assert abs(p.info["sparsity_achieved"] - 0.6) < 0.1
    out = p.fn()
    masked = reference_output(default_registry().get(name), p.inputs)
    dense = refs.attention_reference(p.inputs["q"], p.inputs["k"], p.inputs["v"], causal=True)
    assert float((out.double() - masked).abs().max()) < 1e-5
    assert float((masked - dense).abs().max()) > 1e-2


# -- analytic models and the equal-work mapping --------------------------------------------------------
def test_attention_model_formulas():
    case = Case(B=2, N=1000, d=256, dtype=torch.bfloat16)
    m = model_for("attention", case, "fused")
    assert m.flops == 4 * 2 * 4 * 64 * (1000 * 1001 / 2)
    assert m.bytes_min == 4 * 2 * 4 * 1000 * 64 * 2
    assert m.state == 2 * 2 * 4 * 1000 * 64 * 2  # KV cache grows with N
    naive = model_for("attention", case, "materialized")
    assert naive.workspace == 2 * 4 * 1000**2 * (2 * 2 + 4)
    assert attention_pairs(10, False, 0.5) == 50.0
    sparse = model_for("attention", case.with_(sparsity=0.75), "fused")
    assert math.isclose(sparse.flops, m.flops / 4)


def test_ssm_state_is_constant_in_n_and_attention_grows():
    short, long = Case(B=1, N=256, d=128), Case(B=1, N=65536, d=128)
    for form in ("selective_scan", "ssd", "gla"):
        assert model_for(form, short).state == model_for(form, long).state
    assert model_for("attention", long).state == 256 * model_for("attention", short).state
    assert model_for("selective_scan", short).state == 1 * 128 * 16 * 4


def test_selective_scan_flop_count():
    case = Case(B=2, N=100, d=8, state=4)
    assert model_for("selective_scan", case).flops == 2 * 8 * 100 * (7 * 4 + 12)


def test_bk_core_model_is_16_bytes_per_element_in_fp32():
    m = bk_core_model(1024, 4096)
    per = m.bytes_min / (1024 * 4096)
    assert per == pytest.approx(16.0, rel=1e-3)
    assert bk_core_model(1024, 4096, uniform_k=True).bytes_min == 12 * 1024 * 4096
    assert m.flops_bwd == m.flops  # the exact gradient costs about one forward


def test_model_for_unknown_form():
    with pytest.raises(ValueError, match="form"):
        model_for("transformer", Case(B=1, N=8, d=64))


def test_core_shapes_equal_work():
    s = core_shapes(Case(B=8, N=4096, d=1024))
    assert s.bk_problem == (8 * 1024, 4096)
    assert s.scan_shape == (8, 1024, 4096) and s.scan_state == 16
    assert (s.attention_heads, s.attention_head_dim) == (16, 64)
    assert (s.ssd_heads, s.ssd_state) == (16, 128)
    with pytest.raises(ValueError, match="head_dim"):
        core_shapes(Case(B=1, N=8, d=100))


# -- Case validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,arg",
    [
        ({"B": 0}, "B"),
        ({"N": -1}, "N"),
        ({"dtype": "int8"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"mode": "bwd"}, "mode"),
        ({"state": 0}, "state"),
    ],
)
def test_case_rejects_bad_arguments(kwargs, arg):
    base = {"B": 1, "N": 8, "d": 64}
    with pytest.raises(ValueError, match=arg):
        Case(**{**base, **kwargs})


def test_case_key_is_self_describing():
    assert Case(B=8, N=4096, d=1024, dtype="bf16", sparsity=0.5, mode="fwd+bwd").key == (
        "B8_N4096_d1024_bf16_s0.5_fwd+bwd_seed0"
    )


# -- runner interface -----------------------------------------------------------------------------------
def test_prepare_fwd_bwd_does_not_accumulate_gradients():
    p = prepare("ssm_ssd_chunked", Case(B=1, N=40, d=64, state=4, mode="fwd+bwd"))
    p.fn()
    first = p.inputs["x"].grad.clone()
    p.fn()
    assert torch.equal(p.inputs["x"].grad, first)
    assert p.model.flops_for("fwd+bwd") == 3 * p.model.flops


def test_prepare_fwd_builds_no_graph():
    p = prepare("attention_naive", Case(B=1, N=16, d=64))
    assert not p.fn().requires_grad


def test_prepare_declines_with_reasons():
    with pytest.raises(Declined, match="dense attention kernel"):
        prepare("attention_naive", Case(B=1, N=16, d=64, sparsity=0.5))
    with pytest.raises(Declined, match="sequential Python loop"):
        prepare("ssm_selective_scan_ref", Case(B=1, N=10_000, d=4))
    with pytest.raises(ValueError, match="kind"):
        prepare("thomas", Case(B=1, N=16, d=64))


def test_build_inputs_is_deterministic_per_seed():
    rec = default_registry().get("ssm_selective_scan_parallel")
    a = build_inputs(rec, Case(B=1, N=8, d=4, seed=5))
    b = build_inputs(rec, Case(B=1, N=8, d=4, seed=5))
    c = build_inputs(rec, Case(B=1, N=8, d=4, seed=6))
    assert torch.equal(a["u"], b["u"]) and not torch.equal(a["u"], c["u"])


@pytest.mark.parametrize("layer", ["bk", "mamba2", "attention"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_layers_map_b_n_d_to_b_n_d(layer, mode):
    case = Case(B=2, N=37, d=64, mode=mode)
    p = prepare_layer(layer, case)
    out = p.fn()
    assert tuple(out.shape) == (2, 37, 64) and bool(torch.isfinite(out).all())
    if mode == "fwd+bwd":
        grads = [q.grad for q in p.inputs["layer"].parameters()]
        assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert p.info["parameters"] == sum(q.numel() for q in p.inputs["layer"].parameters())
    assert layer_model(layer, case).flops > 0


def test_mamba2_layer_torch_ssd_is_causal():
    case = Case(B=1, N=24, d=64, dtype=torch.float64)
    p = prepare_layer("mamba2", case, ssd="torch", d_state=16)
    x = p.inputs["x"]
    y1 = p.inputs["layer"](x)
    x2 = x.clone()
    x2[:, 12:] += 1.0  # change the future only
    y2 = p.inputs["layer"](x2)
    assert torch.allclose(y1[:, :12], y2[:, :12], atol=1e-12)
    assert not torch.allclose(y1[:, 12:], y2[:, 12:])
