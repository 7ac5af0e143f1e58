"""Input validation and normalisation for :func:`bkbench.bk_core`.

Every check raises ``ValueError`` whose message names the argument and says how to fix it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
COMPLEX_DTYPES = (torch.complex64, torch.complex128)
HALF_DTYPES = (torch.float16, torch.bfloat16)


class NonFiniteResultError(ValueError):
    """The BK-core result has inf/NaN: T − zI is singular (or numerically so) for some chain."""


@dataclass(frozen=True)
class Normalized:
    """Inputs in the kernel calling convention (docs/architecture.md).

    a: (B, N) contiguous; k: (B, N-1) contiguous or a stride-0 view of one value; z: (B,) complex.
    lead: the user's leading shape, restored on the output. compute: float32 or float64.
    """

    a: torch.Tensor
    k: torch.Tensor
    z: torch.Tensor
    lead: tuple[int, ...]
    compute: torch.dtype

    @property
    def out_dtype(self) -> torch.dtype:
        return torch.complex128 if self.compute == torch.float64 else torch.complex64


def _real_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _check_tensor_dtype(name: str, t: torch.Tensor) -> None:
    if t.dtype not in REAL_DTYPES + COMPLEX_DTYPES:
        raise ValueError(
            f"{name}: dtype {t.dtype} is not supported; pass a floating or complex tensor "
            f"(float32, float64, bfloat16, float16, complex64, complex128), e.g. {name}.float()"
        )


def _check_finite(name: str, t: torch.Tensor) -> None:
    if t.numel() and not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name}: contains NaN or Inf (first at index {bad}); clean the input before calling")


def _as_coupling(name: str, x: object, lead: tuple[int, ...], n: int, device: torch.device) -> torch.Tensor:
    """b or c as a tensor of shape lead + (n-1,), or a 0-d tensor for a scalar coupling."""
    if isinstance(x, numbers.Number) and not isinstance(x, bool):
        return torch.tensor(x, device=device)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {(*lead, n - 1)} or a number, got {type(x).__name__}")
    _check_tensor_dtype(name, x)
    if x.device != device:
        raise ValueError(f"{name}: is on {x.device} but a is on {device}; move both to the same device")
    if x.dim() == 0:
        return x
    want = (*lead, n - 1)
    if tuple(x.shape) != want:
        raise ValueError(
            f"{name}: shape {tuple(x.shape)} does not match a.shape[:-1] + (N-1,) = {want}; "
            f"pass the (N-1) off-diagonal with the same leading dims as a, or a scalar"
        )
    return x


def normalize(a: object, b: object, c: object, z: object) -> Normalized:
    """Validate the public arguments and bring them to the kernel calling convention."""
    if not isinstance(a, torch.Tensor):
        raise ValueError(f"a: expected a torch.Tensor of shape (..., N), got {type(a).__name__}")
    _check_tensor_dtype("a", a)
    if a.dim() == 0:
        raise ValueError("a: needs at least one dimension (..., N); got a 0-d tensor")
    n = a.shape[-1]
    if n < 1:
        raise ValueError("a: N = a.shape[-1] is 0; the BK-core needs N >= 1")
    if a.device.type not in ("cpu", "cuda"):
        raise ValueError(f"a: device {a.device} is not supported; use a CPU or CUDA tensor")
    lead = tuple(a.shape[:-1])
    bt = _as_coupling("b", b, lead, n, a.device)
    ct = _as_coupling("c", c, lead, n, a.device)
    for name, t in (("a", a), ("b", bt), ("c", ct)):
        _check_finite(name, t)

    compute = torch.float64 if torch.float64 in {_real_of(t.dtype) for t in (a, bt, ct)} else torch.float32
    cplx = torch.complex128 if compute == torch.float64 else torch.complex64
    batch = 1
    for s in lead:
        batch *= s

    zt = _as_shift(z, lead, a.device, cplx).reshape(batch)

    a2 = a.reshape(batch, n)
    if a2.dtype not in HALF_DTYPES:
        a2 = a2.to(cplx if a2.is_complex() else compute)
    a2 = a2.contiguous()

    if bt.dim() == 0 and ct.dim() == 0:
        k0 = bt.to(cplx if bt.is_complex() else compute) * ct.to(cplx if ct.is_complex() else compute)
        k = k0.expand(batch, n - 1)
    else:
        kk = torch.broadcast_to(bt, (*lead, n - 1)) * torch.broadcast_to(ct, (*lead, n - 1))
        k = kk.to(cplx if kk.is_complex() else compute).reshape(batch, n - 1).contiguous()
    return Normalized(a=a2, k=k, z=zt, lead=lead, compute=compute)


def _as_shift(z: object, lead: tuple[int, ...], device: torch.device, cplx: torch.dtype) -> torch.Tensor:
    if isinstance(z, numbers.Number) and not isinstance(z, bool):
        zt = torch.tensor(complex(z), dtype=cplx, device=device)
    elif isinstance(z, torch.Tensor):
        if z.dtype not in REAL_DTYPES + COMPLEX_DTYPES:
            raise ValueError(f"z: dtype {z.dtype} is not supported; pass a complex or floating tensor or a number")
        if z.device != device:
            raise ValueError(f"z: is on {z.device} but a is on {device}; move both to the same device")
        zt = z.to(cplx)
    else:
        raise ValueError(f"z: expected a number or a tensor broadcastable to {lead}, got {type(z).__name__}")
    _check_finite("z", zt)
    try:
        return torch.broadcast_to(zt, lead).contiguous()
    except RuntimeError:
        raise ValueError(
            f"z: shape {tuple(zt.shape)} is not broadcastable to a.shape[:-1] = {lead}; "
            "pass one shift per chain or a scalar"
        ) from None


def check_result(g: torch.Tensor, impl: str) -> None:
    """Raise :class:`NonFiniteResultError` if any element of ``g`` is inf or NaN."""
    finite = torch.isfinite(g)
    if not bool(finite.all()):
        idx = (~finite).nonzero()[0].tolist()
        count = int((~finite).sum())
        raise NonFiniteResultError(
            f"bk_core(impl={impl!r}): {count} non-finite value(s) in G (first at index {idx}); "
            "T - zI is singular or numerically singular for that chain (move z off the real axis, "
            "or check the potential and couplings)"
        )
