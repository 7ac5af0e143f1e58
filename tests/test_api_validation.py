"""Bad input gets a ValueError that names the argument; with the value checks on (``check=True``,
``bkbench.checked()``, ``BKBENCH_CHECK=1``) NaN/Inf inputs and non-finite results are errors, not numbers; by default
the call reads metadata only (no host synchronisation) and ``bk_core_ex`` reports the same verdicts per chain."""

from fractions import Fraction

import pytest
import torch

import bkbench
from bkbench import NonFiniteResultError, bk_core, bk_core_ex
from bkbench.harness.problems import Inputs
from bkbench.harness.reference import reference


def good(n=5, batch=(2,)):
    a = torch.randn(*batch, n)
    b = torch.ones(*batch, n - 1)
    return a, b, b.clone()


NONFINITE = [
    (lambda a, b, c: (a.new_full(a.shape, float("nan")), b, c, 1j), "a"),
    (lambda a, b, c: (a, b.new_full(b.shape, float("inf")), c, 1j), "b"),
    (lambda a, b, c: (a, b, c, torch.full((2,), float("nan"), dtype=torch.complex64)), "z"),
]


@pytest.mark.parametrize("mutate,arg", NONFINITE)
def test_nonfinite_input_names_argument_when_checked(mutate, arg, monkeypatch):
    a, b, c = good()
    args = mutate(a, b, c)
    with pytest.raises(ValueError, match=rf"^{arg}: contains NaN or Inf"):
        bk_core(*args, impl="thomas", check=True)
    with bkbench.checked(), pytest.raises(ValueError, match=rf"^{arg}: contains NaN or Inf"):
        bk_core(*args, impl="thomas")
    monkeypatch.setenv("BKBENCH_CHECK", "1")
    with pytest.raises(ValueError, match=rf"^{arg}: contains NaN or Inf"):
        bk_core(*args, impl="thomas")
    with bkbench.checked(False):  # the context overrides the environment
        bk_core(*args, impl="thomas")


@pytest.mark.parametrize("mutate,arg", NONFINITE)
def test_nonfinite_input_is_not_checked_by_default(mutate, arg):
    """The default call reads no value (no host sync): NaN in gives NaN out; bk_core_ex flags the chain."""
    a, b, c = good()
    args = mutate(a, b, c)
    g = bk_core(*args, impl="thomas")
    assert not torch.isfinite(g).all()
    g2, info = bk_core_ex(*args, impl="thomas")
    assert info.shape == a.shape[:-1] and info.dtype == torch.int32
    assert (info == 1).any() and set(info.tolist()) <= {0, 1}


def test_bk_core_ex_reports_ok_and_singular_chains():
    a = torch.tensor([[0.0], [1.0]], dtype=torch.float64)  # chain 0: a = z (singular); chain 1: fine
    g, info = bk_core_ex(a, torch.ones(2, 0, dtype=torch.float64), torch.ones(2, 0, dtype=torch.float64), 0.0,
                         impl="thomas")
    assert info.tolist() == [2, 0]
    assert torch.isfinite(g[1]).all()


@pytest.mark.parametrize(
    "mutate,arg",
    [
        (lambda a, b, c: (a, b, c[..., :-1], 1j), "c"),
        (lambda a, b, c: (a, torch.ones(3, 4), c, 1j), "b"),
        (lambda a, b, c: (a[..., :0], b[..., :0], c[..., :0], 1j), "a"),
        (lambda a, b, c: (a.to(torch.int64), b, c, 1j), "a"),
        (lambda a, b, c: (a, b.to(torch.int32), c, 1j), "b"),
        (lambda a, b, c: (a, b, c, float("nan")), "z"),
        (lambda a, b, c: (a, b, c, torch.ones(3, dtype=torch.complex64)), "z"),
        (lambda a, b, c: (a.numpy(), b, c, 1j), "a"),
        (lambda a, b, c: (a, b, c, "1j"), "z"),
        (lambda a, b, c: (torch.tensor(1.0), b, c, 1j), "a"),
    ],
)
def test_bad_input_names_argument(mutate, arg):
    a, b, c = good()
    args = mutate(a, b, c)
    with pytest.raises(ValueError, match=rf"^{arg}:"):
        bk_core(*args, impl="thomas")


def test_unknown_impl():
    a, b, c = good()
    with pytest.raises(ValueError, match="impl: unknown implementation 'nope'"):
        bk_core(a, b, c, impl="nope")


def test_meta_device_rejected():
    a = torch.empty(2, 4, device="meta")
    with pytest.raises(ValueError, match="^a: device meta"):
        bk_core(a, 1.0, 1.0, impl="thomas")


def test_singular_result_is_an_error_when_checked():
    # T - zI singular: a = z on a single-site chain.
    a = torch.zeros(1, 1, dtype=torch.float64)
    with pytest.raises(NonFiniteResultError, match="non-finite"):
        bk_core(a, torch.ones(1, 0, dtype=torch.float64), torch.ones(1, 0, dtype=torch.float64), 0.0,
                impl="thomas", check=True)


def test_overflowing_coupling_product_is_named_not_called_singular():
    """b = c = 1e20 in float32: b*c overflows float32; the checked call says so (not "singular")."""
    a = torch.full((1, 4), -2.0)
    b = torch.full((1, 3), 1e20)
    with pytest.raises(NonFiniteResultError, match="overflows float32; pass float64"):
        bk_core(a, b, b, 1j, impl="thomas", check=True)
    g = bk_core(a.double(), b.double(), b.double(), 1j, impl="thomas", check=True)  # float64 takes it
    assert torch.isfinite(g).all()


def test_grad_wrt_couplings_refused_clearly():
    a, b, c = good()
    b.requires_grad_(True)
    with pytest.raises(ValueError, match="^b: requires grad"):
        bk_core(a, b, c, impl="thomas")


def test_non_differentiable_impl_refuses_grad():
    a, b, c = good()
    a.requires_grad_(True)
    with pytest.raises(ValueError, match="^a: requires grad"):
        bk_core(a, b, c, impl="naive_loop")


def test_output_contract():
    a, b, c = good(n=6, batch=(2, 3))
    g = bk_core(a, b, c, 1j, impl="thomas")
    assert g.shape == (2, 3, 6) and g.dtype == torch.complex64
    g = bk_core(a.double(), b.double(), c.double(), torch.full((2, 3), 0.5j), impl="thomas")
    assert g.dtype == torch.complex128
    g = bk_core(a.bfloat16(), b.bfloat16(), c.bfloat16(), 1j, impl="thomas")
    assert g.dtype == torch.complex64
    g = bk_core(a[0, 0], b[0, 0], c[0, 0], 1j, impl="thomas")
    assert g.shape == (6,)


def test_auto_picks_an_exact_implementation():
    a, b, c = good(n=50)
    ref = bk_core(a.double(), b.double(), c.double(), impl="thomas")
    g = bk_core(a.double(), b.double(), c.double())
    assert torch.allclose(g, ref, rtol=1e-10, atol=1e-12)


def test_auto_handles_complex_a():
    a, b, c = good(n=20)
    ac = a.to(torch.complex64) - 0.3j
    ref = bk_core(ac, b, c, impl="thomas")
    assert torch.allclose(bk_core(ac, b, c), ref, rtol=1e-5, atol=1e-6)


# -- issue 25, bug 1: precision is the compute precision of the tensor inputs, never that of a number or half type


def _err(g, ref):
    return float((g.to(torch.complex128) - ref).abs().max() / ref.abs().max())


def test_python_number_couplings_keep_float64_work():
    a = -2 + 0.5 * torch.randn(3, 50, dtype=torch.float64)
    g = bk_core(a, 1.1, 1.1, 1j, impl="thomas")
    assert g.dtype == torch.complex128
    assert _err(g, reference(Inputs(a, 1.1, 1.1, 1j))) < 1e-13


def test_half_couplings_multiply_in_float32():
    a = -2 + 0.5 * torch.randn(3, 50)
    b = (1 + 0.3 * torch.rand(3, 49)).bfloat16()
    c = (1 + 0.3 * torch.rand(3, 49)).bfloat16()
    g = bk_core(a, b, c, 1j, impl="thomas")
    ref = reference(Inputs(a.double(), b.double(), c.double(), 1j))  # the bf16 values, multiplied exactly
    assert _err(g, ref) < 1e-5


def test_mixed_complex_couplings_with_complex128_a():
    a = (-2 + 0.5 * torch.randn(2, 30, dtype=torch.float64)).to(torch.complex128) - 0.1j
    b = (1 + 0.1j) * torch.ones(2, 29, dtype=torch.complex64)
    c = torch.full((2, 29), 0.9)
    g = bk_core(a, b, c, 1j, impl="thomas")
    assert g.dtype == torch.complex128
    assert _err(g, reference(Inputs(a, b.to(torch.complex128), c.double(), 1j))) < 1e-13


# -- issue 25, bug 7: every bad input is a ValueError naming the argument


def test_fraction_coupling_is_a_number():
    a = -2 + 0.5 * torch.randn(2, 10, dtype=torch.float64)
    assert torch.allclose(bk_core(a, Fraction(1, 2), 1.0, 1j, impl="thomas"),
                          bk_core(a, 0.5, 1.0, 1j, impl="thomas"))


def test_huge_integer_coupling_names_the_argument():
    a, b, c = good()
    with pytest.raises(ValueError, match=r"^b: .* cannot be represented as a float64"):
        bk_core(a, 10**400, c, impl="thomas")


@pytest.mark.parametrize("impl", ["thomas", "assoc_scan", "naive_loop", "auto"])
def test_unknown_option_is_a_value_error_naming_it(impl):
    a, b, c = good()
    with pytest.raises(ValueError, match=r"^options: impl '.*' takes no option 'nonsense'"):
        bk_core(a, b, c, impl=impl, nonsense=3)


def test_broadcast_couplings_equal_full_ones():
    a = -2 + 0.5 * torch.randn(2, 3, 12)
    row = 1 + 0.2 * torch.rand(11)
    full = row.expand(2, 3, 11)
    assert torch.allclose(bk_core(a, row, row, 1j, impl="thomas"), bk_core(a, full.clone(), full.clone(), 1j,
                                                                           impl="thomas"))
