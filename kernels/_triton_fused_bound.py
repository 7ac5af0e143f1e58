"""A ``triton_fused`` forward bound to one call signature: the eager fast path of :func:`bkbench.bk_core`.

``bkbench.bound_calls`` keeps, per call signature (shapes, strides, dtypes, devices, the types of numbers), what
:func:`bind` returns after the first call of that signature succeeded on the full path. Everything the full path
works out from metadata is fixed here once: the plan and launch constants, how ``k = b * c`` and ``z`` reach the
kernel (``KM``, ``ZM``), strides, integers, the per-stream buffers and, on CUDA, the compiled kernel's launcher.
A call then reads only what depends on values: the numbers (converted and checked finite), the data pointers (and
their 16-byte alignment, which the compiled kernel is specialised on), the current stream, and a new output.

On CUDA the launcher gets pointers as integers: it then skips its per-pointer driver query (``cuPointerGetAttribute``),
which the tensors' device check made redundant. A call is handed back to the full path (``None``) while a CUDA graph
is being captured (the buffers must then be fresh), while a Triton launch hook is set, when a pointer is not
16-byte aligned, when the current CUDA device is not the inputs', and when a number is not finite (the full path
raises the usual error).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bkbench.workspace import workspace_must_be_fresh
from kernels._triton_fused_launch import (
    K_TENSOR_SQUARED,
    K_TENSOR_TENSOR,
    K_TENSOR_VALUE,
    Z_COMPLEX_TENSOR,
    Z_VALUE,
    Stream,
    compiled_launcher,
    counters,
    flags,
    hooks_active,
    launch,
    scratch,
)


def _finite_real(x: Any) -> float | None:
    try:
        v = float(x)
    except (OverflowError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _finite_complex(x: Any) -> complex | None:
    try:
        v = complex(x)
    except (OverflowError, TypeError, ValueError):
        return None
    return v if math.isfinite(v.real) and math.isfinite(v.imag) else None


class BoundForward:
    """The fast forward of one signature: ``bound(a, b, c, z) -> G (B, N) complex64``, or None to hand the call
    back to the full path. ``a`` (B, N) with unit column stride; ``b``, ``c`` (B, N-1) tensors or numbers and ``z`` a
    number or a (B,) tensor, of the types, shapes and strides of the call that was bound."""

    def __init__(self, *, kernel: Any, programs: int, meta: tuple[tuple[str, Any], ...], tail: tuple[Any, ...],
                 km: int, zm: int, tensor_is_b: bool, a_stride: int, b_strides: tuple[int, int],
                 c_strides: tuple[int, int], z_stride: int, batch: int, n: int, nch: int, scratch_floats: int,
                 device: torch.device, alloc: Any) -> None:
        self.kernel, self.programs, self.meta, self.tail = kernel, programs, meta, tail
        self.km, self.zm, self.tensor_is_b = km, zm, tensor_is_b
        self.sa0, (self.sb0, self.sb1), (self.sc0, self.sc1), self.sz = a_stride, b_strides, c_strides, z_stride
        self.batch, self.n, self.nch, self.scratch_floats = batch, n, nch, scratch_floats
        self.shape = (batch, n)
        self.device, self.alloc = device, alloc
        self.cuda = device.type == "cuda"
        self.index = device.index if self.cuda else -1
        self._buffers: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._buffer_ptrs: dict[int, tuple[int, int, int]] = {}
        self._entry: tuple[Any, tuple[Any, ...]] | None = None  # (compiled kernel, trailing constants)

    def _operands(self, a: torch.Tensor, b: Any, c: Any, z: Any) -> tuple[Any, ...] | None:
        """(b slot, c slot, bval, cval, z slot, zre, zim): the tensors as given (a fills an unused slot), or None
        when a number is not finite."""
        km = self.km
        if km == K_TENSOR_TENSOR:
            bt, ct, bval, cval = b, c, 0.0, 1.0
        elif km == K_TENSOR_SQUARED:
            bt, ct, bval, cval = b, a, 0.0, 1.0
        elif km == K_TENSOR_VALUE:
            bt, v = (b, c) if self.tensor_is_b else (c, b)
            cval = _finite_real(v)
            if cval is None:
                return None
            ct, bval = a, 0.0
        else:
            bv, cv = _finite_real(b), _finite_real(c)
            if bv is None or cv is None:
                return None
            bt = ct = a
            bval, cval = bv * cv, 1.0
        if self.zm == Z_VALUE:
            zc = _finite_complex(z)
            if zc is None:
                return None
            return bt, ct, bval, cval, a, zc.real, zc.imag
        return bt, ct, bval, cval, z, 0.0, 0.0

    def _buffers_for(self, where: Stream) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(flags, counters, scratch) for a launch on ``where``: kept per stream, or new and kept by no one when
        ``where.fresh`` (see bkbench.workspace)."""
        bufs = None if where.fresh else self._buffers.get(where.handle)
        if bufs is None:
            bufs = (flags(where, self.batch, self.nch), counters(where, self.batch),
                    scratch(where, self.scratch_floats))
            if not where.fresh:
                self._buffers[where.handle] = bufs
                self._buffer_ptrs[where.handle] = tuple(t.data_ptr() for t in bufs)  # type: ignore[assignment]
        return bufs

    def __call__(self, a: torch.Tensor, b: Any, c: Any, z: Any) -> torch.Tensor | None:
        ops = self._operands(a, b, c, z)
        if ops is None:
            return None
        bt, ct, bval, cval, zt, zre, zim = ops
        fresh = workspace_must_be_fresh()
        if not self.cuda:
            return self._launch_generic(Stream(self.device, 0, fresh), a, bt, ct, bval, cval, zt, zre, zim)
        if torch._C._cuda_isCurrentStreamCapturing() or torch._C._cuda_getDevice() != self.index:
            return None
        where = Stream(self.device, torch._C._cuda_getCurrentRawStream(self.index), fresh)
        entry = self._entry
        pa, pb, pc, pz = a.data_ptr(), bt.data_ptr(), ct.data_ptr(), zt.data_ptr()
        if entry is None or (pa | pb | pc | pz) & 15 or hooks_active():
            return self._launch_generic(where, a, bt, ct, bval, cval, zt, zre, zim)
        if fresh:
            bufs = self._buffers_for(where)
            ptrs = tuple(t.data_ptr() for t in bufs)
        else:
            ptrs = self._buffer_ptrs.get(where.handle)
            if ptrs is None:
                self._buffers_for(where)
                ptrs = self._buffer_ptrs[where.handle]
        g = self.alloc(*self.shape, dtype=torch.complex64, device=self.device)
        compiled, consts = entry
        compiled.run(self.programs, 1, 1, where.handle, compiled.function, compiled.packed_metadata, None, None, None,
                     pa, self.sa0, pb, self.sb0, self.sb1, bval, pc, self.sc0, self.sc1, cval, pz, self.sz, zre, zim,
                     g.data_ptr(), *ptrs, *self.tail, *consts)
        return g

    def _launch_generic(self, where: Stream, a: torch.Tensor, bt: Any, ct: Any, bval: float, cval: float, zt: Any,
                        zre: float, zim: float) -> torch.Tensor:
        """The launch as the full path makes it (tensors, Triton's own launch on a new key); on CUDA it also
        remembers the compiled launcher once the pointers are aligned."""
        if self.zm == Z_COMPLEX_TENSOR:
            zt = torch.view_as_real(zt)
        g = self.alloc(*self.shape, dtype=torch.complex64, device=self.device)
        args = (a, self.sa0, bt, self.sb0, self.sb1, bval, ct, self.sc0, self.sc1, cval, zt, self.sz, zre, zim,
                torch.view_as_real(g), *self._buffers_for(where), *self.tail)
        launch(self.kernel, self.programs, args, self.meta, where)
        if self.cuda and self._entry is None and not any(
                isinstance(t, torch.Tensor) and t.data_ptr() & 15 for t in args):
            self._entry = compiled_launcher(self.kernel, args, self.meta, where)
        return g
