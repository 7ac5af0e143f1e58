"""The delta-rule family (DeltaNet, Gated DeltaNet, KDA) and RWKV-7: float64 references against independent
formulations (explicit transition-matrix products, the chunked WY form, closed forms), builders, models, the
fla-core registrations and their decline reasons, the battery on a PyTorch stand-in, the Gated DeltaNet layer."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from bkbench.harness.baselines import (
    FORMS,
    Case,
    Declined,
    baseline,
    check,
    layer_model,
    model_for,
    prepare,
    prepare_layer,
)
from bkbench.harness.baselines import references as refs
from bkbench.harness.baselines.delta_chunked import gated_delta_chunked
from bkbench.harness.baselines.forms import RWKV7_MAX_LOG_DECAY
from bkbench.kernels.ssm._fla_common import HOPPER_GATED_BWD, gated_bwd_refused, hopper_gated_bwd_reason, version_tuple
from bkbench.registry import Registry, default_registry

NEW_FLA = {
    "ssm_fla_gated_deltanet": "gated_delta_rule",
    "ssm_fla_delta_rule": "delta_rule",
    "ssm_fla_kda": "kda",
    "ssm_fla_rwkv7": "rwkv7",
}
# seeds the battery (0, 1) and the builders' other tests do not use, plus one drawn per run (shown on failure)
RUN_SEED = int.from_bytes(os.urandom(3), "little")
SEEDS = (101, 202, RUN_SEED)


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def _small(form: str, n: int, seed: int) -> dict:
    """float64 inputs of ``form`` with 2 heads of K = V = 8 (small enough for explicit K x K products)."""
    return FORMS[form].build(Case(B=1, N=n, d=16, head_dim=8, dtype=torch.float64, seed=seed))


# -- an independent formulation: products of explicit transition matrices -------------------------------------
def _transitions(form: str, x: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Per step t: the K x K transition M_t, the K x V write W_t and the read vector, written from the papers
    as matrices: S_t = M_t S_{t-1} + W_t, o_t = scale S_t^T read_t. Shapes (B, N, H, K, K), (B, N, H, K, V),
    (B, N, H, K)."""
    if form == "rwkv7":
        eye = torch.diag_embed(torch.exp(x["w"]))
        m = eye - (x["a"] * x["kappa"])[..., :, None] * x["kappa"][..., None, :]
        return m, x["k"][..., :, None] * x["v"][..., None, :], x["r"], 1.0
    k, beta = x["k"], x["beta"]
    kd = k.shape[-1]
    eye = torch.eye(kd, dtype=k.dtype).expand(*k.shape[:-1], kd, kd)
    erase = eye - beta[..., None, None] * k[..., :, None] * k[..., None, :]
    g = x.get("g")
    if g is None:
        decay = eye
    elif g.dim() == 3:
        decay = torch.exp(g)[..., None, None] * eye
    else:
        decay = torch.diag_embed(torch.exp(g))
    write = beta[..., None, None] * k[..., :, None] * x["v"][..., None, :]
    return erase @ decay, write, x["q"], kd ** -0.5


def _unrolled(form: str, x: dict) -> torch.Tensor:
    """o_t = scale read_t^T sum_{s<=t} (M_t ... M_{s+1}) W_s, the products formed explicitly (O(N^2 K^3))."""
    m, w, read, scale = _transitions(form, x)
    n_len = m.shape[1]
    outs = []
    for t in range(n_len):
        prod = torch.eye(m.shape[-1], dtype=m.dtype).expand_as(m[:, 0]).clone()
        acc = torch.zeros_like(w[:, 0])
        for s in range(t, -1, -1):
            acc = acc + prod @ w[:, s]
            prod = prod @ m[:, s]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", read[:, t], acc))
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("form", ["delta_rule", "gated_delta_rule", "kda", "rwkv7"])
@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_reference_matches_explicit_transition_products(form, n):
    for seed in SEEDS:
        x = _small(form, n, seed)
        got = FORMS[form].reference(**x)
        assert got.shape == x["v"].shape and got.dtype == torch.float64
        err = _rel(got, _unrolled(form, x))
        assert err < 1e-12, (form, n, seed, err)


@pytest.mark.parametrize("form", ["delta_rule", "gated_delta_rule", "kda"])
@pytest.mark.parametrize("n", [1, 3, 37, 130])
def test_reference_matches_the_chunked_wy_form(form, n):
    for seed in SEEDS:
        x = FORMS[form].build(Case(B=2, N=n, d=32, head_dim=16, dtype=torch.float64, seed=seed))
        want = FORMS[form].reference(**x)
        for chunk in (1, 16, 64):
            got = gated_delta_chunked(x["q"], x["k"], x["v"], x.get("g"), x["beta"], chunk=chunk)
            err = _rel(got, want)
            assert err < 1e-12, (form, n, seed, chunk, err)


def test_chunked_form_in_float32_and_bf16_returns_the_input_dtype():
    x = FORMS["gated_delta_rule"].build(Case(B=1, N=70, d=64, dtype=torch.bfloat16, seed=3))
    out = gated_delta_chunked(x["q"], x["k"], x["v"], x["g"], x["beta"])
    assert out.dtype == torch.bfloat16
    assert _rel(out.double(), refs.gated_delta_rule_reference(**x)) < 2e-2
    with pytest.raises(ValueError, match="chunk"):
        gated_delta_chunked(x["q"], x["k"], x["v"], x["g"], x["beta"], chunk=0)


# -- closed forms ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["delta_rule", "gated_delta_rule", "kda"])
def test_one_token_is_a_scaled_write(form):
    x = _small(form, 1, 7)
    want = (x["q"] * x["k"]).sum(-1, keepdim=True) * x["beta"][..., None] * x["v"] / math.sqrt(8)
    assert _rel(FORMS[form].reference(**x), want) < 1e-14


def test_rwkv7_one_token_reads_what_was_written():
    x = _small("rwkv7", 1, 7)
    want = (x["r"] * x["k"]).sum(-1, keepdim=True) * x["v"]
    assert _rel(refs.rwkv7_reference(**x), want) < 1e-14


def test_delta_rule_overwrites_the_value_under_a_repeated_key():
    # beta = 1 and one unit key twice: the second write replaces the first (a sum would give v1 + v2)
    k = F.normalize(torch.randn(1, 1, 1, 8, dtype=torch.float64), dim=-1).expand(1, 2, 1, 8)
    v = torch.randn(1, 2, 1, 5, dtype=torch.float64)
    out = refs.delta_rule_reference(k, k, v, torch.ones(1, 2, 1, dtype=torch.float64))
    assert torch.allclose(out[0, 1, 0], v[0, 1, 0] / math.sqrt(8), rtol=0, atol=1e-14)


def _orthonormal_keys(n: int, kd: int, heads: int, axes: bool) -> torch.Tensor:
    """(1, N, H, K) unit keys, pairwise orthogonal over N <= K: random directions, or (``axes``) distinct
    coordinate axes, which stay orthogonal under any per-channel decay Diag(alpha)."""
    if axes:
        basis = torch.eye(kd, dtype=torch.float64)[:, torch.randperm(kd)].expand(heads, kd, kd)
    else:
        basis = torch.linalg.qr(torch.randn(heads, kd, kd, dtype=torch.float64))[0]  # columns orthonormal
    return basis[:, :, :n].permute(2, 0, 1)[None]


@pytest.mark.parametrize("form", ["gated_delta_rule", "kda"])
def test_orthonormal_keys_reduce_the_gated_delta_rule_to_gated_linear_attention(form):
    # k_t orthogonal to every earlier (decayed) key: nothing is erased, S_t = Diag(alpha_t) S_{t-1} + beta_t k_t
    # v_t^T, which is GLA with v scaled by beta (an independent reference, bkbench/harness/baselines/references.py)
    torch.manual_seed(11)
    x = _small(form, 7, 11)
    x["k"] = _orthonormal_keys(7, 8, 2, axes=form == "kda")
    g = x["g"] if x["g"].dim() == 4 else x["g"][..., None].expand_as(x["k"])
    want = refs.gla_reference(x["q"], x["k"], x["v"] * x["beta"][..., None], g)
    assert _rel(FORMS[form].reference(**x), want) < 1e-13


def test_rwkv7_without_in_context_learning_is_gated_linear_attention():
    x = _small("rwkv7", 9, 5)
    x["a"] = torch.zeros_like(x["a"])
    want = refs.gla_reference(x["r"], x["k"], x["v"], x["w"], scale=1.0)
    assert _rel(refs.rwkv7_reference(**x), want) < 1e-13


def test_gate_zero_is_deltanet_and_head_wide_channel_gates_are_gated_deltanet():
    x = _small("gated_delta_rule", 9, 4)
    plain = refs.delta_rule_reference(x["q"], x["k"], x["v"], x["beta"])
    assert _rel(refs.gated_delta_rule_reference(**{**x, "g": torch.zeros_like(x["g"])}), plain) < 1e-14
    per_channel = x["g"][..., None].expand(*x["g"].shape, 8)
    assert _rel(refs.kda_reference(**{**x, "g": per_channel}), refs.gated_delta_rule_reference(**x)) < 1e-14


@pytest.mark.parametrize("form", ["gated_delta_rule", "kda", "rwkv7"])
def test_reference_gradients_match_finite_differences(form):
    x = FORMS[form].build(Case(B=1, N=3, d=8, head_dim=4, dtype=torch.float64, mode="fwd+bwd", seed=9))
    names = FORMS[form].grad_inputs
    ref = FORMS[form].reference

    def fn(*tensors):
        return ref(**{**x, **dict(zip(names, tensors))})

    assert torch.autograd.gradcheck(fn, tuple(x[n] for n in names))


# -- builders and models ----------------------------------------------------------------------------------------
def test_builders_give_the_declared_ranges_and_dtypes():
    case = Case(B=2, N=33, d=128, dtype=torch.bfloat16, seed=1)
    x = FORMS["kda"].build(case)
    assert x["q"].shape == (2, 33, 2, 64) and x["q"].dtype == torch.bfloat16
    assert torch.allclose(x["k"].float().norm(dim=-1), torch.ones(2, 33, 2), atol=1e-2)
    assert x["g"].shape == (2, 33, 2, 64) and x["g"].dtype == torch.float32 and bool((x["g"] < 0).all())
    assert x["beta"].dtype == torch.float32 and bool(((x["beta"] > 0) & (x["beta"] < 1)).all())
    g = FORMS["gated_delta_rule"].build(case)["g"]
    assert g.shape == (2, 33, 2) and bool((g < 0).all() & (g > -1.6 - 1e-6).all())  # -dt*A, dt <= 0.1, A <= 16
    r = FORMS["rwkv7"].build(case)
    assert bool(((r["w"] < 0) & (r["w"] > -RWKV7_MAX_LOG_DECAY)).all())
    assert bool(((r["a"] > 0) & (r["a"] < 1)).all()) and r["kappa"].dtype == torch.bfloat16
    grads = FORMS["rwkv7"].build(case.with_(mode="fwd+bwd"))
    assert all(grads[n].requires_grad and grads[n].is_leaf for n in FORMS["rwkv7"].grad_inputs)


def test_delta_models_count_the_chunked_work_and_a_constant_state():
    case = Case(B=2, N=1024, d=128, dtype=torch.bfloat16)
    m = model_for("gated_delta_rule", case)
    tokens = 2 * 1024 * 2
    assert m.flops == pytest.approx(tokens * (6 * 64 * 64 + 4 * 64 * 64 + 6 * 64 * 64 + 2 * 64 * 64 / 3))
    assert m.bytes_min == tokens * (3 * 64 * 2 + 64 * 2 + 2 * 4)  # q, k, v in, o out (bf16); g, beta fp32
    kda = model_for("kda", case)
    assert kda.bytes_min - m.bytes_min == tokens * 63 * 4  # 64 gates per token and head instead of one
    for form in ("delta_rule", "gated_delta_rule", "kda", "rwkv7"):
        assert model_for(form, case).state == model_for(form, case.with_(N=65536)).state == 2 * 2 * 64 * 64 * 4
    assert model_for("rwkv7", case).flops == pytest.approx(
        tokens * (10 * 16 * 64 + 6 * 16 * 64 + 8 * 64 * 64 + 2 * 16 * 16 / 3))


# -- fla-core registrations ------------------------------------------------------------------------------------
def test_new_fla_baselines_are_registered_with_their_forms():
    from bkbench.baseline_meta import meta_of

    reg = default_registry()
    for name, form in NEW_FLA.items():
        rec = reg.get(name)
        assert rec.kind == "ssm" and rec.module == f"bkbench.kernels.ssm.{name}" and rec.differentiable
        assert rec.devices == ("cuda",) and torch.bfloat16 in rec.dtypes
        assert meta_of(rec).form == form and meta_of(rec).heavy_compile
    assert torch.float32 in reg.get("ssm_fla_gated_deltanet").dtypes
    assert torch.float32 not in reg.get("ssm_fla_delta_rule").dtypes  # fla asserts: no float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="decline reasons on a machine without a GPU")
@pytest.mark.parametrize("name", sorted(NEW_FLA))
def test_fla_baselines_decline_with_a_reason_here(name):
    rec = default_registry().get(name)
    reason = rec.unavailable_reason()
    assert reason and ("fla-core not installed" in reason or "needs CUDA" in reason)
    with pytest.raises(Declined, match=name):
        prepare(name, Case(B=1, N=64, d=64, dtype="bf16", device="cuda"))
    results = check(name, "cpu", seeds=(0,), quick=True)
    assert results and all(r.status == "skip" and r.detail for r in results)


@pytest.mark.parametrize(
    "major,name,triton,tilelang,refused",
    [
        (9, "NVIDIA H200", "3.6.0", False, True),
        (9, "NVIDIA H100 80GB HBM3", "3.4.0", False, True),
        (9, "NVIDIA H200", "3.7.1", False, False),
        (9, "NVIDIA H200", "3.3.1", False, False),
        (9, "NVIDIA H200", "3.6.0", True, False),
        (8, "NVIDIA A100-SXM4-80GB", "3.6.0", False, False),
        (10, "NVIDIA B200", "3.6.0", False, False),
    ],
)
def test_hopper_refusal_follows_fla_guard(major, name, triton, tilelang, refused):
    assert gated_bwd_refused(major, name, triton, tilelang) is refused


def test_version_tuple_and_refusal_message():
    assert version_tuple("3.7.1+git1a2b") == (3, 7, 1) and version_tuple("3.4.0rc2") == (3, 4, 0)
    assert "#640" in HOPPER_GATED_BWD and "3.7.1" in HOPPER_GATED_BWD
    rule = hopper_gated_bwd_reason("chunk_gated_delta_rule")
    assert rule(Case(B=1, N=8, d=64, mode="fwd")) is None
    if not torch.cuda.is_available():
        assert rule(Case(B=1, N=8, d=64, mode="fwd+bwd", device="cuda")) is None  # nothing to ask without a GPU


# -- the battery on a PyTorch stand-in of each new form ----------------------------------------------------------
def _stand_in_registry(wrong: str = "") -> Registry:
    reg = Registry()

    @reg.register("gdn_torch", kind="ssm", devices=("cpu",), dtypes=(torch.float64, torch.float32),
                  differentiable=True)
    @baseline("gated_delta_rule", variant="materialized")
    def gdn_torch(q, k, v, g, beta):
        if wrong == "no-gate":
            g = torch.zeros_like(g)
        if wrong == "no-erase":  # linear attention with the gate: forgets the delta rule's correction
            return refs.gla_reference(q, k, v * beta[..., None], g[..., None].expand_as(k)).to(v.dtype)
        return gated_delta_chunked(q, k, v, g, beta, chunk=16)

    @reg.register("rwkv7_torch", kind="ssm", devices=("cpu",), dtypes=(torch.float64,), differentiable=True)
    @baseline("rwkv7", variant="materialized")
    def rwkv7_torch(r, w, k, v, kappa, a):
        return refs.rwkv7_reference(r, w, k, v, kappa, a)

    return reg


@pytest.fixture
def one_head_battery(monkeypatch):
    """The battery at one head (d = 64) instead of the CUDA-minded d = 256: the same cases, a quarter the work."""
    from bkbench.harness.baselines.check import SHAPES

    for form in ("gated_delta_rule", "rwkv7"):
        monkeypatch.setitem(SHAPES, form, [(1, 64, None)])


def test_battery_passes_a_correct_stand_in_for_the_new_forms(one_head_battery):
    reg = _stand_in_registry()
    for name, dtype in (("gdn_torch", torch.float32), ("rwkv7_torch", torch.float64)):
        results = check(name, "cpu", seeds=(3,), quick=True, registry=reg, dtypes=(dtype,))
        fails = [f"{r.case} {r.key} {r.check}: {r.detail}" for r in results if r.status == "fail"]
        assert not fails, fails
        assert any(r.check == "grad" and r.status == "pass" for r in results)


@pytest.mark.parametrize("wrong", ["no-gate", "no-erase"])
def test_battery_fails_a_wrong_gated_delta_rule(wrong, one_head_battery):
    results = check("gdn_torch", "cpu", seeds=(3,), quick=True, registry=_stand_in_registry(wrong),
                    dtypes=(torch.float64,))
    assert any(r.status == "fail" and r.check == "value" for r in results)


# -- the Gated DeltaNet layer -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_gated_deltanet_layer_maps_b_n_d_to_b_n_d(mode):
    case = Case(B=2, N=37, d=64, mode=mode)
    p = prepare_layer("gated_deltanet", case)
    out = p.fn()
    assert tuple(out.shape) == (2, 37, 64) and bool(torch.isfinite(out).all())
    if mode == "fwd+bwd":
        assert all(q.grad is not None and bool(torch.isfinite(q.grad).all()) for q in p.inputs["layer"].parameters())
    assert p.info["core"].startswith("torch") and "fla not used" in p.info["core"]
    m = layer_model("gated_deltanet", case, p.inputs["layer"])
    assert m.flops > 0 and m.state == 2 * 1 * 64 * 64 * 4


def test_gated_deltanet_layer_is_causal_and_rejects_bad_options():
    case = Case(B=1, N=24, d=64, dtype=torch.float64)
    p = prepare_layer("gated_deltanet", case, expand_v=2)
    layer, x = p.inputs["layer"], p.inputs["x"]
    x2 = x.clone()
    x2[:, 12:] += 1.0  # change the future only
    y1, y2 = layer(x), layer(x2)
    assert torch.allclose(y1[:, :12], y2[:, :12], atol=1e-12) and not torch.allclose(y1[:, 12:], y2[:, 12:])
    with pytest.raises(ValueError, match="core"):
        prepare_layer("gated_deltanet", case, core="fla")  # fla-core cannot run here
    with pytest.raises(ValueError, match="core"):
        prepare_layer("gated_deltanet", case, core="cuda")
    with pytest.raises(ValueError, match="expand_v"):
        prepare_layer("gated_deltanet", case, expand_v=0)


@pytest.mark.parametrize("name,refused", [("ssm_fla_ssd", True), ("ssm_fla_gated_deltanet", True),
                                          ("ssm_fla_delta_rule", False), ("ssm_fla_kda", False),
                                          ("ssm_fla_rwkv7", False)])
def test_gated_backward_is_declined_on_a_hopper_with_triton_3_6(monkeypatch, name, refused):
    # what the rule sees on the H100/H200 images (Triton 3.6, no tilelang); fwd is never declined by it
    triton = pytest.importorskip("triton")
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    rec = default_registry().get(name)
    reason = rec.supports(Case(B=8, N=4096, d=256, dtype="bf16", device="cuda", mode="fwd+bwd"))
    assert (reason is not None and "#640" in reason and "3.6.0" in reason) is refused
    assert rec.supports(Case(B=8, N=4096, d=256, dtype="bf16", device="cuda", mode="fwd")) is None
    monkeypatch.setattr(triton, "__version__", "3.7.1")
    assert rec.supports(Case(B=8, N=4096, d=256, dtype="bf16", device="cuda", mode="fwd+bwd")) is None


@pytest.mark.parametrize("name,form_dtype", [("gdn_torch", "float32"), ("rwkv7_torch", "float64")])
def test_runner_checks_the_new_forms_against_their_reference(name, form_dtype):
    # the suite runner's per-case check slices every token-axis input (bkbench.harness.workloads.TOKEN_AXES)
    from bkbench.harness.suites import CaseSpec
    from bkbench.harness.workloads import TOKEN_AXES
    from bkbench.harness.workloads import prepare as prepare_workload

    reg = _stand_in_registry()
    spec = CaseSpec(suite="t", group="g", impl=name, kind="ssm", n=260, batch=2, d=64, dtype=form_dtype,
                    sparsity=0.0, mode="fwd", options={}, timing="cpu", device="cpu")
    res = prepare_workload(spec, reg).check()
    assert res.passed and res.rel_err is not None and res.rel_err < 1e-5 and "first 256 of 260 tokens" in res.scope
    form = "gated_delta_rule" if name == "gdn_torch" else "rwkv7"
    assert set(TOKEN_AXES[form][0]) == set(FORMS[form].build(Case(B=1, N=2, d=64)))
    if name == "gdn_torch":  # a wrong gated delta rule fails the runner's check too
        assert not prepare_workload(spec, _stand_in_registry("no-erase")).check().passed
