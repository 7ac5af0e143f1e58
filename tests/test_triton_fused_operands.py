"""triton_fused reads the user's inputs as they are: every coupling form (two tensors, a tensor and a number, two
numbers, one tensor squared, a stride-0 k read once, a broadcast view) and every shift form (number, complex and real
per-chain tensors) gives float64-accurate G, one-chunk and chunked chains alike, and both ways of folding the exact
path in agree. CPU interpreter here, CUDA too when present."""

from __future__ import annotations

import pytest
import torch

import bkbench
from bkbench.harness.problems import Inputs
from bkbench.harness.reference import reference

tf = pytest.importorskip("bkbench.kernels.bk.triton_fused")
from bkbench.kernels.bk._triton_fused_launch import from_kernel_convention  # noqa: E402
from tests.triton_devices import TRITON_DEVICES  # noqa: E402

SMALL = tf.FusedConfig(seg=8, L=16, H=1, M1=16, warps=1)  # 128-position tiles: N = 300 runs as chunks


@pytest.fixture(params=TRITON_DEVICES)
def device(request):
    """The CPU under the interpreter (no GPU), and CUDA where there is one (tests/triton_devices.py)."""
    return request.param


def _err(g: torch.Tensor, ref: torch.Tensor) -> float:
    g = g.detach().cpu().to(torch.complex128)
    assert torch.isfinite(g).all()
    return float((g - ref).abs().max() / ref.abs().max())


def _data(batch: int, n: int, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    a = (-2.0 + 0.5 * torch.randn(batch, n, generator=gen)).to(device)
    b = (1.0 + 0.3 * torch.rand(batch, n - 1, generator=gen)).to(device)
    c = (0.8 + 0.3 * torch.rand(batch, n - 1, generator=gen)).to(device)
    return a, b, c


def _forms(a, b, c, device):
    batch = a.shape[0]
    zc = torch.full((batch,), 0.3 + 0.8j, dtype=torch.complex64, device=device)
    zr = torch.full((batch,), -0.1, device=device)
    return {
        "b, c tensors": (b, c, 1j),
        "b tensor, c number": (b, 0.7, 1j),
        "b number, c tensor": (1.3, c, 0.2 + 0.5j),
        "numbers": (1.1, 0.8, 1j),
        "b is c": (b, b, 1j),
        "broadcast b": (b[:1].expand(batch, -1), c, 1j),
        "shared row b (N-1,)": (b[0], c, 1j),
        "complex z per chain": (b, c, zc),
        "real z per chain": (b, c, zr),
    }


@pytest.mark.parametrize("n", [1, 2, 3, 17, 300])
def test_every_operand_form_matches_float64(n, device):
    a, b, c = _data(4, n, device, seed=n)
    for name, (bb, cc, z) in _forms(a, b, c, device).items():
        if isinstance(z, torch.Tensor) and not z.is_complex():
            z = z + 1.0j  # a real per-chain z is tested below (its own matrix must be non-singular)
        g = bkbench.bk_core(a, bb, cc, z, impl="triton_fused", config=SMALL)
        full = (4, n - 1)
        ref = reference(Inputs(a.cpu(), torch.broadcast_to(bb, full).cpu() if isinstance(bb, torch.Tensor) else bb,
                               torch.broadcast_to(cc, full).cpu() if isinstance(cc, torch.Tensor) else cc,
                               z.cpu() if isinstance(z, torch.Tensor) else z))
        assert _err(g, ref) < 2e-6, (name, n)


def test_real_shift_tensor_is_read_as_real(device):
    a, b, c = _data(3, 40, device, seed=3)
    z = torch.full((3,), 0.25, device=device)  # real z: Im 0
    g = bkbench.bk_core(a, b, c, z, impl="triton_fused")
    ref = reference(Inputs(a.cpu(), b.cpu(), c.cpu(), z.cpu().to(torch.complex128)))
    t = bkbench.bk_core(a.double(), b.double(), c.double(), z.double(), impl="thomas")
    # real z is ill-conditioned territory: triton_fused stays as close to float64 as thomas in float64 is to it
    assert _err(g, ref) < max(1e-3, 10 * _err(t, ref))


def test_stride0_k_is_read_once_with_its_value(device):
    """The registry convention's uniform k (a stride-0 view of one value) is read from memory: a value other than 1
    must come out right (regression: it was once read per element and squared)."""
    a, _, _ = _data(4, 300, device, seed=9)
    k = torch.full((), 0.7, device=device).expand(4, 299)
    z = torch.full((4,), 1j, dtype=torch.complex64, device=device)
    g = tf.forward(a, k, z, config=SMALL)
    assert _err(g, reference(Inputs(a.cpu(), 0.7, 1.0, 1j))) < 2e-6


def test_the_fold_recomputes_flagged_chunked_chains_and_leaves_counters_at_zero(device):
    """Near-real z on chunked chains: every chunk program counts itself and the last one recomputes the chain
    exactly; the counters are left at zero for the next call."""
    from bkbench.kernels.bk._triton_fused_launch import Stream, counters

    a, b, c = _data(3, 300, device, seed=5)
    z = torch.full((3,), 0.2 + 0.01j, dtype=torch.complex64, device=device)
    ops = from_kernel_convention(a, (b * c).contiguous(), z)
    g, flags = tf.forward_operands(ops, SMALL, return_flags=True)
    assert int(flags.sum()) > 0
    assert _err(g, reference(Inputs(a.cpu(), b.cpu(), c.cpu(), 0.2 + 0.01j))) < 1e-5
    assert int(counters(Stream.current(a.device), 3)[:3].abs().sum()) == 0
