"""How ``triton_fused`` reaches its kernels: the operands as the user holds them, and one cached launch per call.

:class:`Operands` describes the BK-core inputs without copying them: ``a`` (B, N) with a row stride, the couplings
as a value, one tensor times a value, two tensors ``b`` and ``c`` (any strides: broadcast views read in place), one
tensor squared, or one value read from memory (a stride-0 ``k``), and ``z`` as a value or a per-chain tensor. The
kernels form ``k = b * c`` and every cast in registers (``_triton_fused_passes._load_tile``).

:func:`launch` calls a compiled kernel's launcher directly from a per-(kernel, constants, shape, dtype, alignment)
cache, so an eager call costs one launch of host time, not ``JITFunction.run``'s argument binding and
specialisation. The first call of a key goes through ``JITFunction.run`` (which compiles or loads the kernel).

The fast kernels recompute the chains they flag in the same launch (the fold, ``_triton_fused_kernels``). They
need a per-chain counter, zero on entry and left at zero by the kernel, and a scratch row per chain:
:func:`counters` and :func:`scratch` keep one of each per (device, stream), grown as needed, so a call allocates
nothing but its output. While a CUDA graph is being captured both are allocated fresh (the counter's zero fill is
then part of the graph).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from bkbench.registry import is_uniform
from bkbench.workspace import workspace_must_be_fresh

# how k = b * c reaches the kernels (``KM``)
K_VALUE, K_TENSOR_VALUE, K_TENSOR_TENSOR, K_TENSOR_SQUARED, K_LOADED_VALUE = 0, 1, 2, 3, 4
# how z does (``ZM``)
Z_VALUE, Z_COMPLEX_TENSOR, Z_REAL_TENSOR = 0, 1, 2


@dataclass(frozen=True)
class Operands:
    """BK-core inputs in the form the kernels read them (no copies).

    a: (B, N) float32 / bfloat16 / float16, unit column stride. k = b * c: ``km`` (``K_*``) says which of ``b``,
    ``c`` (real tensors (B, N-1), any strides, or None) and the values ``bval``, ``cval`` form it. z: ``zm``
    (``Z_*``): the value ``zre + i zim``, or ``z`` a real view of a per-chain tensor ((B, 2) for complex, (B,)
    for real)."""

    a: torch.Tensor
    km: int
    b: torch.Tensor | None = None
    c: torch.Tensor | None = None
    bval: float = 0.0
    cval: float = 1.0
    zm: int = Z_VALUE
    z: torch.Tensor | None = None
    zre: float = 0.0
    zim: float = 0.0

    @property
    def batch(self) -> int:
        return self.a.shape[0]

    @property
    def n(self) -> int:
        return self.a.shape[1]

    @property
    def scalar_coupling(self) -> bool:
        """True when k is one number for every position (the kernels keep it in [1, S] columns)."""
        return self.km in (K_VALUE, K_LOADED_VALUE)

    def args(self) -> tuple[Any, ...]:
        """The 14 operand arguments every kernel takes first (an unused pointer is ``a``, never read)."""
        a = self.a
        b = self.b if self.b is not None else a
        c = self.c if self.c is not None else a
        sb0, sb1 = (self.b.stride(0), self.b.stride(1)) if self.b is not None and self.b.dim() == 2 else (0, 0)
        sc0, sc1 = (self.c.stride(0), self.c.stride(1)) if self.c is not None and self.c.dim() == 2 else (0, 0)
        z = self.z if self.z is not None else a
        sz = self.z.stride(0) if self.z is not None else 0
        return (a, a.stride(0), b, sb0, sb1, float(self.bval), c, sc0, sc1, float(self.cval),
                z, sz, float(self.zre), float(self.zim))


def _real_view_of_shift(z: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(ZM, view) of a per-chain shift tensor (B,): complex as its (B, 2) real view, real as itself."""
    if z.is_complex():
        return Z_COMPLEX_TENSOR, torch.view_as_real(z)
    return Z_REAL_TENSOR, z


def from_kernel_convention(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> Operands:
    """Operands of the registry calling convention: a (B, N), k (B, N-1) real (a stride-0 view of one value is read
    once), z (B,) complex."""
    if a.stride(-1) != 1:
        a = a.contiguous()
    zm, zv = _real_view_of_shift(z)
    if a.shape[1] < 2 or k.numel() == 0:
        return Operands(a, K_VALUE, bval=0.0, cval=0.0, zm=zm, z=zv)
    if is_uniform(k):
        return Operands(a, K_LOADED_VALUE, b=k, cval=1.0, zm=zm, z=zv)
    return Operands(a, K_TENSOR_VALUE, b=k, cval=1.0, zm=zm, z=zv)


# --------------------------------------------------------------------------------------------------------
# per-(device, stream) buffers of the fold
# --------------------------------------------------------------------------------------------------------

_COUNTERS: dict[tuple[str, int], torch.Tensor] = {}
_SCRATCH: dict[tuple[str, int], torch.Tensor] = {}
_FLAGS: dict[tuple[str, int], torch.Tensor] = {}


@dataclass(frozen=True)
class Stream:
    """Where a call's launches go: the device, its current raw CUDA stream (0 on the CPU), and whether its buffers
    must be fresh (the stream is capturing a CUDA graph, or the call runs inside a compiled graph:
    ``bkbench.workspace``). Read once per call."""

    device: torch.device
    handle: int
    fresh: bool

    @classmethod
    def current(cls, device: torch.device) -> Stream:
        if device.type == "cuda":
            return cls(device, torch._C._cuda_getCurrentRawStream(device.index),
                       torch.cuda.is_current_stream_capturing() or workspace_must_be_fresh())
        return cls(device, 0, workspace_must_be_fresh())


def _per_stream(cache: dict[tuple[str, int], torch.Tensor], where: Stream, size: int, dtype: torch.dtype,
                zeroed: bool) -> torch.Tensor:
    """A 1-D buffer of at least ``size`` elements kept per (device, stream), grown by doubling; a fresh one while
    the stream captures a CUDA graph (then a zero fill is part of the graph) or inside a compiled graph."""
    make = torch.zeros if zeroed else torch.empty
    if where.fresh:
        return make(max(size, 1), dtype=dtype, device=where.device)
    key = (str(where.device), where.handle)
    buf = cache.get(key)
    if buf is None or buf.numel() < size:
        buf = make(max(size, 4096, 2 * (buf.numel() if buf is not None else 0)), dtype=dtype, device=where.device)
        cache[key] = buf
    return buf


def counters(where: Stream, batch: int) -> torch.Tensor:
    """int32 (>= batch,) zeros: the fold's per-chain counters (every launch leaves them at zero)."""
    return _per_stream(_COUNTERS, where, batch, torch.int32, zeroed=True)


def scratch(where: Stream, floats: int) -> torch.Tensor:
    """float32 (>= floats,) scratch of the exact path (contents undefined)."""
    return _per_stream(_SCRATCH, where, floats, torch.float32, zeroed=False)


def flags(where: Stream, batch: int, nch: int) -> torch.Tensor:
    """int32 (batch, nch) for the fast kernels' per-chunk flags: every element is written by the launch, so one
    buffer per stream serves every call."""
    return _per_stream(_FLAGS, where, batch * nch, torch.int32, zeroed=False)[: batch * nch].view(batch, nch)


def fold_buffers(where: Stream, batch: int, nch: int, scratch_floats: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flags (batch, nch) int32, counters (batch,) int32 zeros, scratch (>= scratch_floats,) float32) of one fast
    launch: the per-stream buffers, or, when ``where.fresh``, slices of one new allocation (each at a 256-byte
    offset: the compiled kernels assume 16-byte aligned pointers) with one zero fill for the counters."""
    if not where.fresh:
        return flags(where, batch, nch), counters(where, batch), scratch(where, scratch_floats)
    f_len, c_len = _aligned(batch * nch), _aligned(batch)
    buf = torch.empty(f_len + c_len + max(scratch_floats, 1), dtype=torch.int32, device=where.device)
    cnt = buf[f_len:f_len + batch]
    cnt.zero_()
    return buf[: batch * nch].view(batch, nch), cnt, buf[f_len + c_len:].view(torch.float32)


def _aligned(elements: int, to: int = 64) -> int:
    return -(-elements // to) * to


def pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def chunks(n: int, span: int) -> int:
    """Chunks of ``span`` positions an exact sweep needs for a chain of ``n``."""
    return max(1, math.ceil(n / span))


# --------------------------------------------------------------------------------------------------------
# the launch
# --------------------------------------------------------------------------------------------------------

_COMPILED: OrderedDict[tuple[Any, ...], tuple[Any, tuple[Any, ...]]] = OrderedDict()
_COMPILED_MAX = 4096


def _arg_key(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What Triton specialises a compiled kernel on, for these arguments: pointer dtypes and 16-byte alignment, and
    the integers themselves (a per-shape key: Triton's own rules, value 1 and divisibility by 16, are implied)."""
    out = []
    for v in args:
        if isinstance(v, torch.Tensor):
            out.append((v.dtype, v.data_ptr() & 15 == 0))
        elif isinstance(v, int):
            out.append(v)
    return tuple(out)


_RUNTIME_KNOBS: Any = None


def hooks_active() -> bool:
    """Whether a Triton launch hook is set (a profiler such as proton): then launches carry Triton's launch
    metadata. Triton 3.6 keeps the hooks as (usually empty) chains; older versions as None or a callable."""
    global _RUNTIME_KNOBS
    rt = _RUNTIME_KNOBS
    if rt is None:
        from triton import knobs

        rt = _RUNTIME_KNOBS = knobs.runtime
    enter, exit_ = rt.launch_enter_hook, rt.launch_exit_hook
    return bool((enter is not None and getattr(enter, "calls", True))
                or (exit_ is not None and getattr(exit_, "calls", True)))


def compiled_launcher(kernel: Any, args: tuple[Any, ...], meta: tuple[tuple[str, Any], ...],
                      where: Stream) -> tuple[Any, tuple[Any, ...]] | None:
    """(compiled kernel, trailing constant arguments) that :func:`launch` calls for these arguments on CUDA, or None
    before their first launch."""
    return _COMPILED.get((kernel, meta, where.device.index, _arg_key(args)))


def run_compiled(entry: tuple[Any, tuple[Any, ...]], grid: int, handle: int, args: tuple[Any, ...]) -> None:
    """Call a compiled kernel's launcher directly (no launch hooks: see :func:`hooks_active`). A pointer argument
    may be a tensor or its ``data_ptr()`` (an int skips the launcher's per-pointer driver query)."""
    compiled, tail = entry
    compiled.run(grid, 1, 1, handle, compiled.function, compiled.packed_metadata, None, None, None, *args, *tail)


def launch(kernel: Any, grid: int, args: tuple[Any, ...], meta: tuple[tuple[str, Any], ...], where: Stream) -> None:
    """Launch the Triton ``kernel`` on ``grid`` programs with positional ``args`` and the constants and launch
    options ``meta`` ((name, value) pairs) on ``where``. On CUDA the compiled kernel's launcher is called from a
    cache; the interpreter (CPU) goes through ``JITFunction.run`` every time."""
    device = where.device
    if device.type != "cuda":
        kernel[(grid,)](*args, **dict(meta))
        return
    key = (kernel, meta, device.index, _arg_key(args))
    hit = _COMPILED.get(key)
    if hit is None or device.index != torch.cuda.current_device():
        with torch.cuda.device(device):
            if hit is None:
                compiled = kernel[(grid,)](*args, **dict(meta))
                binder = kernel.device_caches[device.index][4]
                bound, _, _ = binder(*args, **dict(meta))
                _COMPILED[key] = (compiled, tuple(bound.values())[len(args):])
                if len(_COMPILED) > _COMPILED_MAX:
                    _COMPILED.popitem(last=False)
            else:
                run_compiled(hit, grid, where.handle, args)
        return
    if hooks_active():
        from triton import knobs

        compiled, tail = hit
        md = compiled.launch_metadata((grid, 1, 1), where.handle, *args, *tail)
        compiled.run(grid, 1, 1, where.handle, compiled.function, compiled.packed_metadata, md,
                     knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook, *args, *tail)
        return
    run_compiled(hit, grid, where.handle, args)
