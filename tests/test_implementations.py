"""Direct checks of the three PyTorch implementations beyond the gate battery: fresh random inputs, many
sizes, overflow-prone cases, gradients against dense float64 autograd (torch.autograd.gradcheck too)."""

import math

import pytest
import torch

from bkbench import bk_core
from bkbench.harness.accuracy import relative_error
from bkbench.harness.problems import Problem, make_inputs
from bkbench.harness.reference import dense_grad_reference, dense_reference, pivot_reference, reference

EXACT = ["naive_loop", "thomas", "assoc_scan"]


@pytest.mark.parametrize("impl", EXACT)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 31, 64, 100, 255])
@pytest.mark.parametrize("dtype,tol", [("float32", 2e-4), ("float64", 1e-9)])
def test_matches_dense_reference(impl, n, dtype, tol):
    for seed in (11, 12, 13):
        p = Problem(batch=(3,), n=n, dtype=dtype, coupling="random", seed=seed, potential=1.0)
        inp = make_inputs(p)
        err = relative_error(bk_core(inp.a, inp.b, inp.c, inp.z, impl=impl), dense_reference(inp))
        assert err.finite and err.rel_err_chain < tol, (impl, n, dtype, seed, err)


def test_references_agree():
    for p in (Problem(n=200, dtype="float64", z=0.5 + 1e-3j), Problem(n=150, coupling="random", complex_a=0.5)):
        inp = make_inputs(p)
        assert relative_error(pivot_reference(inp), dense_reference(inp)).rel_err < 1e-12


@pytest.mark.parametrize("impl", EXACT)
def test_no_overflow_where_determinants_overflow(impl):
    # |det| grows like prod |alpha| ~ 10^N here: float32 overflows after ~40 steps, float64 after ~300.
    p = Problem(batch=(2,), n=5000, dtype="float32", potential=8.0)
    inp = make_inputs(p)
    g = bk_core(inp.a, inp.b, inp.c, inp.z, impl=impl)
    assert relative_error(g, reference(inp)).rel_err < 2e-4


@pytest.mark.parametrize("impl", ["thomas", "assoc_scan"])
def test_gradcheck_float64(impl):
    torch.manual_seed(0)
    for n in (1, 2, 6):
        a = (-2 + torch.randn(2, n, dtype=torch.float64)).requires_grad_(True)
        b = torch.randn(2, max(n - 1, 0), dtype=torch.float64)
        c = torch.randn(2, max(n - 1, 0), dtype=torch.float64)
        z = torch.tensor([0.3 + 1j, -0.2 + 0.7j], dtype=torch.complex128, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, z, b=b, c=c: bk_core(a, b, c, z, impl=impl), (a, z))


@pytest.mark.parametrize("impl", ["thomas", "assoc_scan"])
def test_gradient_matches_dense_autograd_complex_a(impl):
    p = Problem(batch=(2, 2), n=50, dtype="float64", complex_a=0.7, z_spread=0.3, coupling="random")
    inp = make_inputs(p)
    a = inp.a.clone().requires_grad_(True)
    gout = torch.randn(inp.a.shape, dtype=torch.complex128)
    bk_core(a, inp.b, inp.c, inp.z, impl=impl).backward(gout)
    ref_a, _ = dense_grad_reference(inp, gout)
    assert relative_error(a.grad, ref_a).rel_err < 1e-10


@pytest.mark.parametrize("impl", EXACT)
def test_uniform_and_tensor_couplings_agree(impl):
    p = Problem(batch=(3,), n=40, dtype="float64")
    inp = make_inputs(p)
    g1 = bk_core(inp.a, inp.b, inp.c, inp.z, impl=impl)
    g2 = bk_core(inp.a, 1.0, 1.0, inp.z, impl=impl)
    assert torch.allclose(g1, g2, rtol=1e-13, atol=0)


def test_implementations_do_not_modify_inputs():
    inp = make_inputs(Problem(batch=(2,), n=30, dtype="float32", coupling="random"))
    before = [t.clone() for t in (inp.a, inp.b, inp.c)]
    for impl in EXACT:
        bk_core(inp.a, inp.b, inp.c, inp.z, impl=impl)
    assert all(torch.equal(x, y) for x, y in zip(before, (inp.a, inp.b, inp.c)))


def test_hermitian_bound_holds():
    # For Hermitian T and Im z = eta, |G_i| <= 1 / eta.
    inp = make_inputs(Problem(batch=(4,), n=300, dtype="float64", z=0.1 + 0.25j, potential=2.0))
    g = bk_core(inp.a, inp.b, inp.c, inp.z, impl="thomas")
    assert float(g.abs().max()) <= 1 / 0.25 + 1e-12
    assert math.isfinite(float(g.abs().max()))
