"""lut_green / lut_green_triton: geometric decay in the window, pure-table m = 0, exactness at full window,
closure paths (table / closed form / position-dependent k / complex a / per-chain z), out-of-range
handling, the table cache, the declared error model, and the Triton kernel (interpreter on the CPU)."""

import math

import pytest
import torch

import bkbench.kernels.bk._lut as lut
from bkbench import bk_core
from bkbench.harness.accuracy import relative_error
from bkbench.harness.problems import Problem, make_inputs
from bkbench.harness.reference import reference
from bkbench.kernels.bk.lut_green import lut_error_model, lut_green_core
from bkbench.registry import default_registry
from tests.triton_devices import TRITON_HOST

F64 = torch.float64


def _err(p: Problem, impl: str = "lut_green", **opts) -> float:
    """Relative error against float64; the Triton kernel runs where the tests run Triton (tests/triton_devices.py)."""
    inp = make_inputs(p.with_(device=TRITON_HOST) if impl == "lut_green_triton" else p)
    g = bk_core(inp.a, inp.b, inp.c, inp.z, impl=impl, check=False, **opts)
    return relative_error(g.cpu(), reference(make_inputs(p))).rel_err


def _laplacian_inputs(b, n, dtype=F64, seed=0, z=1j, potential=0.5):
    gen = torch.Generator().manual_seed(seed)
    a = (-2.0 + potential * torch.randn(b, n, generator=gen, dtype=F64)).to(dtype)
    k = torch.ones(b, max(n - 1, 0), dtype=dtype)
    zc = torch.complex128 if dtype == F64 else torch.complex64
    return a, k, torch.full((b,), z, dtype=zc)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_error_decays_geometrically_in_window_float64(seed):
    p = Problem(batch=(4,), n=400, dtype="float64", seed=seed)
    errs = {m: _err(p, window=m) for m in (0, 2, 4, 8, 16)}
    assert 1e-2 < errs[0] < 0.5
    for lo, hi in ((0, 2), (2, 4), (4, 8), (8, 16)):
        assert errs[hi] < errs[lo] / 5, errs  # geometric: each doubling of m gains > 5x (measured 20..1e5x)
    assert errs[16] <= 1e-6, errs
    assert _err(p, window=32) < 1e-13


def test_window_zero_is_the_pure_table():
    a, k, z = _laplacian_inputs(3, 50)
    g = lut_green_core(a, k, z, window=0)
    spec = lut.TableSpec(*lut.DEFAULT_RANGE, lut.DEFAULT_SIZE)
    pairs, index = lut.chain_keys(z, k[:, 0])
    tab = lut.build_tables(pairs, spec, torch.complex128, "cpu")
    sig = lut.interpolate(tab, index, a, spec)
    alpha = a.to(torch.complex128) - z[:, None]
    want = torch.empty_like(alpha)
    want[:, 1:-1] = 1.0 / (alpha[:, 1:-1] - sig[:, :-2] - sig[:, 2:])
    want[:, 0] = 1.0 / (alpha[:, 0] - sig[:, 1])  # chain end: the left fraction is empty (L_0 = 0)
    want[:, -1] = 1.0 / (alpha[:, -1] - sig[:, -2])
    assert torch.allclose(g, want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 17, 40])
def test_full_window_is_exact(n):
    # with m >= N - 1 every fraction reaches the chain end and terminates exactly: no table value is used
    for coupling in ("laplacian", "random"):
        p = Problem(batch=(3,), n=n, dtype="float64", coupling=coupling, seed=n)
        assert _err(p, window=max(n - 1, 0)) < 1e-12


@pytest.mark.parametrize("n", [1, 2, 3, 33, 257])
def test_float32_against_float64_reference(n):
    for seed in (3, 4):
        p = Problem(batch=(5,), n=n, dtype="float32", seed=seed)
        assert _err(p, window=32) < 1e-5


def test_zero_couplings_cut_the_chain_exactly():
    # every coupling zero: G = 1 / alpha exactly for any window, table and closed-form paths alike
    for m in (0, 1, 5):
        assert _err(Problem(batch=(3,), n=50, dtype="float64", sparsity=1.0), window=m) < 1e-15
    # partial sparsity: the fractions reset at a zero bond, the error still falls with m
    p = Problem(batch=(4,), n=300, dtype="float64", sparsity=0.3)
    assert _err(p, window=16) < _err(p, window=4) / 100


def test_table_and_closed_form_closures_agree():
    a, k, z = _laplacian_inputs(4, 200)
    for m in (0, 3, 8):
        g_tab = lut_green_core(a, k, z, window=m)
        g_ana = lut_green_core(a, k, z, window=m, tail="analytic")
        # the only difference is the linear interpolation of Sigma (h = 16/4095), damped by the window
        assert (g_tab - g_ana).abs().max() < 1e-5


def test_position_dependent_k_complex_a_per_chain_z():
    cases = [
        Problem(batch=(4,), n=129, dtype="float64", coupling="random", seed=5),
        Problem(batch=(4,), n=150, dtype="float64", complex_a=0.5, z_spread=0.3, seed=6),
        Problem(batch=(6,), n=96, dtype="float64", z_spread=0.5, seed=7),
        Problem(batch=(4,), n=257, dtype="float64", coupling="random", negative=0.3, z=0.2 + 1.5j, seed=8),
    ]
    for p in cases:
        e8, e24 = _err(p, window=8), _err(p, window=24)
        assert e24 < e8 / 100 and e24 < 1e-8, (p.key, e8, e24)


def test_per_chain_z_uses_one_table_per_chain():
    lut.clear_table_cache()
    a, k, _ = _laplacian_inputs(3, 60)
    z = torch.tensor([1j, 0.5 + 1j, 1j], dtype=torch.complex128)
    g = lut_green_core(a, k, z, window=2)
    for b in range(3):  # each chain alone, with its own z, gives the same numbers
        gb = lut_green_core(a[b : b + 1], k[b : b + 1], z[b : b + 1], window=2)
        assert torch.allclose(g[b], gb[0], rtol=1e-14, atol=0)
    plan = lut.plan_closure(a, k, z, lut.TableSpec(-8, 8, 4096), out_of_range="analytic", tail="table", max_tables=8)
    assert plan.source == "table" and plan.tables.shape[0] == 2 and plan.index.tolist() == [0, 1, 0]
    plan = lut.plan_closure(a, k, z, lut.TableSpec(-8, 8, 4096), out_of_range="analytic", tail="table", max_tables=1)
    assert plan.source == "analytic"  # more distinct (z, k) pairs than max_tables: closed form


def test_out_of_range_is_never_clamped():
    a, k, z = _laplacian_inputs(2, 80)
    a[0, 10] = 30.0  # far outside the default table range (-8, 8)
    a[1, 40] = -25.0
    ref = lut_green_core(a, k, z, window=0, tail="analytic")
    for mode in ("analytic", "extend"):
        g = lut_green_core(a, k, z, window=0, out_of_range=mode)
        assert (g - ref).abs().max() < 1e-5, mode  # a clamped read of Sigma(8) would be off by ~1e-1
    clamped = a.clamp(-8, 8)
    g_clamped = lut_green_core(clamped, k, z, window=0, tail="analytic")
    assert (g_clamped - ref).abs().max() > 1e-3  # the test can fail: clamping is visible here
    with pytest.raises(ValueError, match="table_range"):
        lut_green_core(a, k, z, window=0, out_of_range="raise")


def test_extended_range_covers_the_data():
    spec = lut.extended_spec(lut.TableSpec(-8.0, 8.0, 4097), -30.0, 2.0)
    assert spec.lo <= -30.0 and spec.hi >= 2.0 and math.isclose(spec.step, 16.0 / 4096)


def test_table_cache_is_keyed_and_bounded():
    lut.clear_table_cache()
    a, k, z = _laplacian_inputs(2, 30)
    lut_green_core(a, k, z, window=1)
    lut_green_core(a, k, z, window=4)  # same (z, k, range, size, dtype, device): cache hit
    assert lut.cache_size() == 1
    lut_green_core(a, k, z, window=1, table_size=1025)
    lut_green_core(a.float(), k.float(), z.to(torch.complex64), window=1)
    assert lut.cache_size() == 3
    for i in range(lut.CACHE_ENTRIES + 5):
        lut_green_core(a, k, torch.full((2,), 1j + 0.01 * i, dtype=torch.complex128), window=1)
    assert lut.cache_size() == lut.CACHE_ENTRIES


def test_bad_options_raise_value_error_naming_the_option():
    a, k, z = _laplacian_inputs(1, 5)
    for opts, name in (
        ({"window": -1}, "window"),
        ({"window": 1.5}, "window"),
        ({"table_size": 1}, "table_size"),
        ({"table_range": (3, 1)}, "table_range"),
        ({"out_of_range": "clamp"}, "out_of_range"),
        ({"tail": "exact"}, "tail"),
        ({"max_tables": 0}, "max_tables"),
        ({"windw": 3}, "options"),
    ):
        with pytest.raises(ValueError, match=name):
            lut_green_core(a, k, z, **opts)


def test_error_model_covers_measurements():
    """The declared tolerance must hold on a grid wider than the gate battery (seeded, float64)."""
    worst = 0.0
    for potential in (0.0, 0.5, 2.0):
        for z in (-2 + 0.05j, -1 + 0.3j, 1j, 0.5 + 0.01j, -2 + 3j):
            for coupling in ("laplacian", "random"):
                p = Problem(batch=(3,), n=160, dtype="float64", potential=potential, z=z, coupling=coupling)
                inp = make_inputs(p)
                ref = reference(inp)
                for m in (0, 1, 4, 12, 32):
                    g = bk_core(inp.a, inp.b, inp.c, inp.z, impl="lut_green", window=m, check=False)
                    err = relative_error(g, ref).rel_err
                    tol = lut_error_model(p, {"window": m})
                    assert err <= tol, (p.key, m, err, tol)
                    worst = max(worst, err / tol)
    assert worst > 1e-3  # the envelope is not vacuous everywhere


def test_registry_record():
    rec = default_registry().get("lut_green")
    assert not rec.exact and rec.error_model is lut_error_model
    p = Problem(n=100, z=1j)
    assert rec.tolerance(p, {"window": 16}) < rec.tolerance(p, {"window": 4}) < rec.tolerance(p, {"window": 0})
    assert rec.tolerance(Problem(z=0.5 + 0j), {"window": 8}) == math.inf


# ---------------------------------------------------------------- Triton (CPU interpreter at small sizes)
triton_cases = [
    ("laplacian", 1), ("laplacian", 2), ("laplacian", 3), ("scalar", 19), ("random", 23),
]


@pytest.mark.parametrize("coupling,n", triton_cases)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_triton_matches_pytorch(coupling, n, dtype):
    from bkbench.kernels.bk.lut_green_triton import lut_green_triton_core

    p = Problem(batch=(3,), n=n, dtype=dtype, coupling=coupling, z_spread=0.2, seed=n)
    inp = make_inputs(p)
    norm = __import__("bkbench.validate", fromlist=["normalize"]).normalize(inp.a, inp.b, inp.c, inp.z)
    tol = 2e-6 if dtype == "float32" else 1e-13
    for m in (0, 3, 11):  # 11 > UNROLL_MAX: the rolled loop
        for opts in ({}, {"tail": "analytic"}, {"table_range": (-2.2, -1.8)}):
            g1 = lut_green_core(norm.a, norm.k, norm.z, window=m, **opts)
            g2 = lut_green_triton_core(*(t.to(TRITON_HOST) for t in (norm.a, norm.k, norm.z)), window=m,
                                       **opts).cpu()
            assert g2.dtype == g1.dtype
            assert ((g1 - g2).abs().max() / g1.abs().max()).item() < tol, (m, opts)


def test_triton_complex_a_and_reference():
    p = Problem(batch=(2,), n=40, dtype="float32", complex_a=0.5, seed=3)
    assert _err(p, impl="lut_green_triton", window=6) < lut_error_model(p, {"window": 6})
    p = Problem(batch=(2,), n=40, dtype="float64", seed=4)
    assert _err(p, impl="lut_green_triton", window=39) < 1e-12
