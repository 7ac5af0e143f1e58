"""Bad input gets a ValueError that names the argument; non-finite results are errors, not numbers."""

import pytest
import torch

from bkbench import NonFiniteResultError, bk_core


def good(n=5, batch=(2,)):
    a = torch.randn(*batch, n)
    b = torch.ones(*batch, n - 1)
    return a, b, b.clone()


@pytest.mark.parametrize(
    "mutate,arg",
    [
        (lambda a, b, c: (a.new_full(a.shape, float("nan")), b, c, 1j), "a"),
        (lambda a, b, c: (a, b.new_full(b.shape, float("inf")), c, 1j), "b"),
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


def test_singular_result_is_an_error():
    # T - zI singular: a = z on a single-site chain.
    a = torch.zeros(1, 1, dtype=torch.float64)
    with pytest.raises(NonFiniteResultError, match="non-finite"):
        bk_core(a, torch.ones(1, 0, dtype=torch.float64), torch.ones(1, 0, dtype=torch.float64), 0.0,
                impl="thomas")


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
