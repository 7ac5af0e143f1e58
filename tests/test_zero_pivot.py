"""Zero pivots of non-singular matrices (issue 25, bug 2) and an empty batch for lut_green (bug 7).

a = [0, 1], b = c = 1, z = 0 is non-singular (det = -1, G = [-1, 0]) but its first LU pivot is exactly 0; the
pivot-form kernels divided by it and returned NaN, which bk_core reported as "T - zI is singular". A singular
matrix (a = [1, 1], det = 0) must still give a non-finite G (lns returned |G| ~ 1e7)."""

from __future__ import annotations

import pytest
import torch

import bkbench
from bkbench.harness.problems import Inputs
from bkbench.harness.reference import dense_grad_reference, dense_reference, pivot_reference
from bkbench.registry import default_registry

PIVOT_KERNELS = ["thomas", "assoc_scan", "naive_loop", "lut_green", "lut_green_triton", "lns", "lns_triton"]
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-4, torch.float64: 1e-9}

# on a GPU machine the kernels run on CUDA (Triton kernels take CPU tensors only under the interpreter)
DEV = "cuda" if torch.cuda.is_available() else "cpu"
# two chains with exact zero pivots inside: D_1 = 1 - 1/1 = 0 and D_1 = 2 - 1/0.5 = 0 (and a zero coupling)
INTERIOR = [[1.0, 1.0, 2.0, -2.0, 3.0, 1.5, 1.0, 1.0, 0.5], [0.5, 2.0, 1.0, 1.0, 2.0, 0.0, 1.0, 3.0, 1.0]]


def _options(impl: str) -> dict:
    return {"window": 16} if impl.startswith("lut_green") else {}  # a window as long as the chain: exact


def _kernel(impl: str, a: torch.Tensor, b: torch.Tensor | float, z: complex = 0.0) -> torch.Tensor:
    """The registered kernel on inputs in the calling convention (docs/architecture.md): no result check."""
    rec = default_registry().get(impl)
    if rec.unavailable_reason():
        pytest.skip(rec.unavailable_reason())
    bsz, n = a.shape
    cplx = torch.complex128 if a.dtype == torch.float64 else torch.complex64
    k = ((torch.as_tensor(b, dtype=a.dtype, device=a.device) ** 2).expand(bsz, n - 1)
         if not isinstance(b, torch.Tensor) else b * b)
    zt = torch.full((bsz,), z, dtype=cplx, device=a.device)
    return rec.fn(a, k, zt, **{**rec.defaults, **_options(impl)})


def _dense(a: torch.Tensor, b: torch.Tensor | float, z: complex = 0.0) -> torch.Tensor:
    return dense_reference(Inputs(a.double(), b if not isinstance(b, torch.Tensor) else b.double(),
                                  b if not isinstance(b, torch.Tensor) else b.double(), z))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", PIVOT_KERNELS)
def test_zero_pivot_of_a_nonsingular_matrix(impl: str, dtype: torch.dtype) -> None:
    a = torch.tensor([[0.0, 1.0]], dtype=dtype, device=DEV)
    g = bkbench.bk_core(a, 1.0, 1.0, 0.0, impl=impl)  # raised NonFiniteResultError ("singular") before the fix
    assert torch.isfinite(g).all(), g
    err = (g.cpu().to(torch.complex128) - torch.tensor([[-1.0, 0.0]], dtype=torch.complex128)).abs().max()
    assert err <= TOL[dtype], (impl, g)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", PIVOT_KERNELS)
def test_interior_zero_pivots_both_directions(impl: str, dtype: torch.dtype) -> None:
    a = torch.tensor(INTERIOR, dtype=dtype)
    a = torch.cat([a, a.flip(1)])  # flipped: the zero pivots occur in the backward (E) recursion
    b = torch.ones(4, a.shape[1] - 1, dtype=dtype)
    b[1, 3] = b[3, 4] = 0.0
    g = _kernel(impl, a.to(DEV), b.to(DEV)).cpu()
    ref = _dense(a, b)
    assert torch.isfinite(g).all(), g
    err = float((g.to(torch.complex128) - ref).abs().max() / ref.abs().max())
    assert err <= TOL[dtype], err


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", ["thomas", "assoc_scan"])
def test_gradient_through_a_zero_pivot(impl: str, dtype: torch.dtype) -> None:
    a0 = torch.tensor(INTERIOR, dtype=dtype)
    a0 = torch.cat([a0, a0.flip(1)])
    b = torch.ones(4, a0.shape[1] - 1, dtype=dtype)
    a = a0.clone().to(DEV).requires_grad_(True)
    g = bkbench.bk_core(a, b.to(DEV), b.to(DEV), 0.0, impl=impl)
    gen = torch.Generator().manual_seed(0)
    gout = torch.complex(torch.randn(g.shape, generator=gen, dtype=torch.float64),
                         torch.randn(g.shape, generator=gen, dtype=torch.float64))
    g.backward(gout.to(g.dtype).to(DEV))
    ref, _ = dense_grad_reference(Inputs(a0.double(), b.double(), b.double(), 0.0), gout)
    err = float((a.grad.cpu().double() - ref).abs().max() / ref.abs().max())
    assert err <= {torch.float32: 1e-3, torch.float64: 1e-9}[dtype], err


@pytest.mark.parametrize("gauss", ["computed", "table"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", ["thomas", "assoc_scan", "naive_loop", "lns", "lns_triton"])
def test_singular_matrix_stays_non_finite(impl: str, dtype: torch.dtype, gauss: str) -> None:
    if gauss == "table" and (not impl.startswith("lns") or dtype == torch.float64):
        pytest.skip("the Gaussian-log table is an lns option, float32 only")
    a = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=dtype, device=DEV)  # det 0 (singular), det -1 (zero pivot)
    rec = default_registry().get(impl)
    if rec.unavailable_reason():
        pytest.skip(rec.unavailable_reason())
    k = torch.ones(2, 1, dtype=dtype, device=DEV)
    z = torch.zeros(2, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64, device=DEV)
    g = rec.fn(a, k, z, **{**rec.defaults, **({"gauss": gauss} if impl.startswith("lns") else {})})
    assert not torch.isfinite(g[0]).all(), g  # lns gave |G| ~ 1e7 here
    assert torch.isfinite(g[1]).all(), g


def test_references_handle_zero_pivots() -> None:
    a = torch.tensor(INTERIOR + [[0.0] + [1.0] * 8], dtype=torch.float64)
    a = torch.cat([a, a.flip(1)])
    inp = Inputs(a, 1.0, 1.0, 0.0)
    dense, pivot = dense_reference(inp), pivot_reference(inp)
    assert torch.isfinite(pivot).all()
    assert float((dense - pivot).abs().max() / dense.abs().max()) < 1e-13
    sing = pivot_reference(Inputs(torch.tensor([[1.0, 1.0]], dtype=torch.float64), 1.0, 1.0, 0.0))
    assert not torch.isfinite(sing).all()


@pytest.mark.parametrize("n", [1, 5])
def test_lut_green_empty_batch(n: int) -> None:
    for b in (1.0, torch.ones(0, n - 1, device=DEV)):
        g = bkbench.bk_core(torch.zeros(0, n, device=DEV), b, b, 1j, impl="lut_green")
        assert g.shape == (0, n) and g.dtype == torch.complex64
