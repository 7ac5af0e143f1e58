"""Input checks and the normalised form of a :func:`bkbench.bk_core` call.

:func:`call_args` reads metadata only (types, shapes, dtypes, devices): it never reads a value on the device, so
it costs no host synchronisation and works under ``torch.compile``. Every failure is a ``ValueError`` whose
message names the argument and says how to fix it. The value checks (NaN/Inf in the inputs, a non-finite G) are
separate: :func:`check_values` and :func:`check_result` synchronise and run only in checked mode
(``bk_core(..., check=True)``, ``bkbench.checked()``), and :func:`status` computes the same verdicts per chain as a
tensor, with no synchronisation (``bk_core_ex``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
COMPLEX_DTYPES = (torch.complex64, torch.complex128)
HALF_DTYPES = (torch.float16, torch.bfloat16)
WIDE_DTYPES = (torch.float64, torch.complex128)

# bk_core_ex status codes (per chain)
STATUS_OK, STATUS_BAD_INPUT, STATUS_NONFINITE = 0, 1, 2


class NonFiniteResultError(ValueError):
    """The BK-core result has inf/NaN: T − zI is singular (or numerically so) for some chain, or the couplings'
    product overflows the compute precision."""


Number = float | complex


@dataclass(frozen=True)
class CallArgs:
    """One call's inputs after the metadata checks, as views (nothing is copied or cast).

    a: (B, N) view of the user's ``a`` (leading dims flattened), real or complex, any floating dtype.
    b, c: (B, N-1) views (broadcast views included) or Python numbers (float, or complex for complex couplings).
    z: (B,) view of a per-chain shift tensor, or a Python complex.
    lead: the user's leading shape (restored on the output). compute: float32, or float64 when any tensor input is
    float64/complex128 (Python numbers never lower or raise it)."""

    a: torch.Tensor
    b: torch.Tensor | Number
    c: torch.Tensor | Number
    z: torch.Tensor | complex
    lead: tuple[int, ...]
    compute: torch.dtype

    @property
    def batch(self) -> int:
        return self.a.shape[0]

    @property
    def n(self) -> int:
        return self.a.shape[1]

    @property
    def device(self) -> torch.device:
        return self.a.device

    @property
    def out_dtype(self) -> torch.dtype:
        return torch.complex128 if self.compute == torch.float64 else torch.complex64

    @property
    def complex_couplings(self) -> bool:
        return any(isinstance(x, complex) or (isinstance(x, torch.Tensor) and x.is_complex())
                   for x in (self.b, self.c))

    def couplings(self) -> torch.Tensor:
        """k = b * c as a (B, N-1) tensor, formed in the compute precision (a copy; the registry calling
        convention). Two numbers give a stride-0 view of one value (``bkbench.registry.is_uniform``)."""
        cplx = self.out_dtype
        if not isinstance(self.b, torch.Tensor) and not isinstance(self.c, torch.Tensor):
            value = self.b * self.c
            dtype = cplx if isinstance(value, complex) else self.compute
            one = torch.full((), value, dtype=dtype, device=self.device)
            return one.expand(self.batch, max(self.n - 1, 0))
        parts = [x.to(cplx if x.is_complex() else self.compute) if isinstance(x, torch.Tensor) else x
                 for x in (self.b, self.c)]
        return (parts[0] * parts[1]).reshape(self.batch, max(self.n - 1, 0)).contiguous()

    def shifts(self) -> torch.Tensor:
        """z as a (B,) complex tensor of the output dtype (a copy or a fill: no host-to-device transfer)."""
        if isinstance(self.z, torch.Tensor):
            return self.z.to(self.out_dtype).contiguous()
        return torch.full((self.batch,), self.z, dtype=self.out_dtype, device=self.device)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_tensor_dtype(name: str, t: torch.Tensor) -> None:
    if t.dtype not in REAL_DTYPES + COMPLEX_DTYPES:
        raise ValueError(
            f"{name}: dtype {_dtype_name(t.dtype)} is not supported; pass a floating or complex tensor "
            f"(float32, float64, bfloat16, float16, complex64, complex128), e.g. {name}.float()"
        )


def _number(name: str, x: object, expected: str) -> Number:
    """A Python number argument as float (real) or complex; finite, representable in float64. ``expected`` says
    what else the argument may be (for the error)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Number):
        raise ValueError(f"{name}: expected {expected}, got {type(x).__name__}")
    try:
        value: Number = float(x) if isinstance(x, numbers.Real) else complex(x)
    except (OverflowError, TypeError, ValueError):
        raise ValueError(f"{name}: {x!r} cannot be represented as a float64 number; pass a smaller value "
                         "or a tensor") from None
    parts = (value.real, value.imag) if isinstance(value, complex) else (value,)
    if not all(math.isfinite(p) for p in parts):
        raise ValueError(f"{name}: {x!r} is not finite; pass a finite number")
    return value


def _coupling(name: str, x: object, lead: tuple[int, ...], n: int, a: torch.Tensor,
              batch: int) -> torch.Tensor | Number:
    """b or c as a (B, N-1) view, or a Python number."""
    want = (*lead, n - 1)
    if not isinstance(x, torch.Tensor):
        return _number(name, x, f"a tensor of shape {want} or a number")
    _check_tensor_dtype(name, x)
    if x.device != a.device:
        raise ValueError(f"{name}: is on {x.device} but a is on {a.device}; move both to the same device")
    if x.dim() == 2 and len(lead) == 1 and x.shape[0] == batch and x.shape[1] == n - 1:
        return x  # already (B, N-1): the common case, no view to build
    try:
        view = torch.broadcast_to(x, want)
    except RuntimeError:
        raise ValueError(
            f"{name}: shape {tuple(x.shape)} does not broadcast to a.shape[:-1] + (N-1,) = {want}; pass the "
            f"(N-1) off-diagonal with the leading dims of a (or broadcastable to them), or a number"
        ) from None
    return view.reshape(batch, n - 1)


def _shift(z: object, lead: tuple[int, ...], a: torch.Tensor, batch: int) -> torch.Tensor | complex:
    if not isinstance(z, torch.Tensor):
        return complex(_number("z", z, f"a number or a tensor broadcastable to {lead}"))
    _check_tensor_dtype("z", z)
    if z.device != a.device:
        raise ValueError(f"z: is on {z.device} but a is on {a.device}; move both to the same device")
    if z.dim() == 1 and len(lead) == 1 and z.shape[0] == batch:
        return z
    try:
        view = torch.broadcast_to(z, lead)
    except RuntimeError:
        raise ValueError(
            f"z: shape {tuple(z.shape)} is not broadcastable to a.shape[:-1] = {lead}; pass one shift per chain "
            "or a number"
        ) from None
    return view.reshape(batch)


def call_args(a: object, b: object, c: object, z: object) -> CallArgs:
    """Check the public arguments (metadata only) and return their views."""
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
    batch = math.prod(lead)
    bt = _coupling("b", b, lead, n, a, batch)
    ct = _coupling("c", c, lead, n, a, batch)
    zt = _shift(z, lead, a, batch)
    wide = a.dtype in WIDE_DTYPES or any(isinstance(t, torch.Tensor) and t.dtype in WIDE_DTYPES for t in (bt, ct, zt))
    return CallArgs(a=a if a.dim() == 2 else a.reshape(batch, n), b=bt, c=ct, z=zt, lead=lead,
                    compute=torch.float64 if wide else torch.float32)


# --------------------------------------------------------------------------------------------------------
# value checks (checked mode: they synchronise) and the per-chain status (no synchronisation)
# --------------------------------------------------------------------------------------------------------


def _tensors(args: CallArgs) -> list[tuple[str, torch.Tensor]]:
    return [(name, t) for name, t in (("a", args.a), ("b", args.b), ("c", args.c), ("z", args.z))
            if isinstance(t, torch.Tensor)]


def check_values(args: CallArgs) -> None:
    """ValueError naming the first input with a NaN or Inf (host synchronisation)."""
    for name, t in _tensors(args):
        if t.numel() and not bool(torch.isfinite(t).all()):
            bad = (~torch.isfinite(t)).nonzero()[0].tolist()
            if len(args.lead) > 1:  # report the index in the user's shape
                bad = [*torch.unravel_index(torch.tensor(bad[0]), args.lead), *bad[1:]]
                bad = [int(i) for i in bad]
            raise ValueError(f"{name}: contains NaN or Inf (first at index {bad}); clean the input before calling")


def coupling_overflow(args: CallArgs) -> bool:
    """True when |b * c| exceeds the largest finite value of the compute precision somewhere (formed in float64;
    synchronises)."""
    if args.n < 2:
        return False
    wide = [x.to(torch.complex128 if x.is_complex() else torch.float64) if isinstance(x, torch.Tensor) else x
            for x in (args.b, args.c)]
    product = wide[0] * wide[1]
    size = abs(product) if not isinstance(product, torch.Tensor) else float(product.abs().amax())
    return size > torch.finfo(args.compute).max


def check_result(g: torch.Tensor, impl: str, args: CallArgs | None = None) -> None:
    """Raise :class:`NonFiniteResultError` if any element of ``g`` is inf or NaN (host synchronisation)."""
    finite = torch.isfinite(g)
    if bool(finite.all()):
        return
    idx = (~finite).nonzero()[0].tolist()
    count = int((~finite).sum())
    if args is not None and coupling_overflow(args):
        raise NonFiniteResultError(
            f"bk_core(impl={impl!r}): {count} non-finite value(s) in G (first at index {idx}): the couplings' "
            f"product b*c overflows {_dtype_name(args.compute)}; pass float64 inputs or rescale T"
        )
    raise NonFiniteResultError(
        f"bk_core(impl={impl!r}): {count} non-finite value(s) in G (first at index {idx}); T - zI is singular "
        "or numerically singular for that chain (a zero pivot alone is not this: it is handled); move z off the "
        "real axis, or check the potential and couplings"
    )


def status(args: CallArgs, g: torch.Tensor) -> torch.Tensor:
    """Per-chain verdict (B,) int32 with no host synchronisation: ``STATUS_BAD_INPUT`` where a, b, c or z has a
    NaN/Inf for that chain, else ``STATUS_NONFINITE`` where G has one, else ``STATUS_OK``."""
    bad_in = torch.zeros(args.batch, dtype=torch.bool, device=args.device)
    for _, t in _tensors(args):
        ok = torch.isfinite(t)
        bad_in |= ~(ok.reshape(args.batch, -1).all(dim=1) if t.dim() > 1 else ok)
    bad_out = ~torch.isfinite(g.reshape(args.batch, -1)).all(dim=1)
    code = torch.where(bad_out, STATUS_NONFINITE, STATUS_OK)
    return torch.where(bad_in, STATUS_BAD_INPUT, code).to(torch.int32)


# --------------------------------------------------------------------------------------------------------
# the registry calling convention
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalized:
    """Inputs in the registry calling convention (docs/architecture.md), as copies.

    a: (B, N) contiguous, in the compute precision (bf16/fp16 kept when the compute precision is float32, complex
    kept complex); k: (B, N-1) ``b * c`` formed in the compute precision, or a stride-0 view of one value; z: (B,)
    complex. lead: the user's leading shape. compute: float32 or float64."""

    a: torch.Tensor
    k: torch.Tensor
    z: torch.Tensor
    lead: tuple[int, ...]
    compute: torch.dtype

    @property
    def out_dtype(self) -> torch.dtype:
        return torch.complex128 if self.compute == torch.float64 else torch.complex64


def working_a(args: CallArgs, takes: tuple[torch.dtype, ...] = HALF_DTYPES) -> torch.Tensor:
    """``a`` as the registry convention hands it over: a half type kept in float32 work when the implementation
    ``takes`` it, otherwise cast to the compute precision (complex stays complex)."""
    a = args.a
    if a.dtype in HALF_DTYPES and args.compute == torch.float32 and a.dtype in takes:
        return a.contiguous()
    return a.to(args.out_dtype if a.is_complex() else args.compute).contiguous()


def normalize(a: object, b: object, c: object, z: object) -> Normalized:
    """Check the arguments (metadata, then values: this synchronises) and bring them to the registry calling
    convention (the harness and tests call kernels this way; ``bk_core`` itself copies nothing for kernels that
    take the user's inputs)."""
    args = call_args(a, b, c, z)
    check_values(args)
    return Normalized(a=working_a(args), k=args.couplings(), z=args.shifts(), lead=args.lead, compute=args.compute)
