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

:class:`BoundVjp` is the backward of a signature the same way (the ``bkbench::bk_core_backward`` operator and the
eager gradient path call it), and :class:`BoundGradForward` is the eager forward of a call whose input requires
grad: the bound forward, then one ``torch.autograd.Function`` node whose backward is the bound backward.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bkbench.kernels.bk._triton_fused_launch import (
    K_TENSOR_SQUARED,
    K_TENSOR_TENSOR,
    K_TENSOR_VALUE,
    Z_COMPLEX_TENSOR,
    Z_VALUE,
    Stream,
    compiled_launcher,
    fold_buffers,
    hooks_active,
    launch,
)
from bkbench.workspace import workspace_must_be_fresh


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


class BoundOperands:
    """What a bound launch fixes about the operands of one signature (how k and z reach the kernel, the strides,
    B and N) and how a call's (a, b, c, z) become the kernel's operand slots. The tensors are the user's, of the
    types, shapes and strides of the call that was bound; the kernels read them by pointer with the strides of
    their (B, N), (B, N-1), (B,) views (``a``'s leading dims flattened, ``b``, ``c``, ``z`` possibly broadcast),
    which are views of the same memory (``bkbench.bound_calls`` checks it)."""

    def __init__(self, *, km: int, zm: int, tensor_is_b: bool, a_stride: int, b_strides: tuple[int, int],
                 c_strides: tuple[int, int], z_stride: int, batch: int, n: int, lead: tuple[int, ...],
                 device: torch.device, alloc: Any) -> None:
        self.km, self.zm, self.tensor_is_b = km, zm, tensor_is_b
        self.sa0, (self.sb0, self.sb1), (self.sc0, self.sc1), self.sz = a_stride, b_strides, c_strides, z_stride
        self.batch, self.n = batch, n
        self.shape = (batch, n)
        self.out_shape = (*lead, n)  # G's shape: a's leading dims (B is their product), N
        self.device, self.alloc = device, alloc
        self.cuda = device.type == "cuda"
        self.index = device.index if self.cuda else -1

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


class BoundForward(BoundOperands):
    """The fast forward of one signature: ``bound(a, b, c, z) -> G (B, N) complex64``, or None to hand the call
    back to the full path."""

    def __init__(self, *, kernel: Any, programs: int, meta: tuple[tuple[str, Any], ...], tail: tuple[Any, ...],
                 nch: int, scratch_floats: int, **operands: Any) -> None:
        super().__init__(**operands)
        self.kernel, self.programs, self.meta, self.tail = kernel, programs, meta, tail
        self.nch, self.scratch_floats = nch, scratch_floats
        self._buffers: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._buffer_ptrs: dict[int, tuple[int, int, int]] = {}
        self._entry: tuple[Any, tuple[Any, ...]] | None = None  # (compiled kernel, trailing constants)
        self._direct: Any = None  # the launcher's own launch function, when it needs no scratch (_direct_launch)
        self._direct_head: tuple[Any, ...] = ()

    def _buffers_for(self, where: Stream) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(flags, counters, scratch) for a launch on ``where``: kept per stream, or new and kept by no one when
        ``where.fresh`` (see bkbench.workspace)."""
        bufs = None if where.fresh else self._buffers.get(where.handle)
        if bufs is None:
            bufs = fold_buffers(where, self.batch, self.nch, self.scratch_floats)
            if not where.fresh:
                self._buffers[where.handle] = bufs
                self._buffer_ptrs[where.handle] = tuple(t.data_ptr() for t in bufs)  # type: ignore[assignment]
        return bufs

    def __call__(self, a: torch.Tensor, b: Any, c: Any, z: Any) -> torch.Tensor | None:
        ops = self._operands(a, b, c, z)
        if ops is None:
            return None
        bt, ct, bval, cval, zt, zre, zim = ops
        if not self.cuda:
            where = Stream(self.device, 0, workspace_must_be_fresh())
            return self._launch_generic(where, a, bt, ct, bval, cval, zt, zre, zim)
        if torch._C._cuda_isCurrentStreamCapturing() or torch._C._cuda_getDevice() != self.index:
            return None
        handle = torch._C._cuda_getCurrentRawStream(self.index)
        entry = self._entry
        pa, pb, pc, pz = a.data_ptr(), bt.data_ptr(), ct.data_ptr(), zt.data_ptr()
        if entry is None or (pa | pb | pc | pz) & 15 or hooks_active():
            where = Stream(self.device, handle, workspace_must_be_fresh())
            return self._launch_generic(where, a, bt, ct, bval, cval, zt, zre, zim)
        fresh = workspace_must_be_fresh()
        ptrs = None if fresh else self._buffer_ptrs.get(handle)
        if ptrs is None:
            bufs = self._buffers_for(Stream(self.device, handle, fresh))  # alive until the launch below
            ptrs = tuple(t.data_ptr() for t in bufs)  # type: ignore[assignment]
        g = self.alloc(*self.out_shape, dtype=torch.complex64, device=self.device)
        compiled, consts = entry
        direct = self._direct
        if direct is not None:
            direct(self.programs, 1, 1, handle, compiled.function, *self._direct_head, compiled.packed_metadata, None,
                   None, None, pa, self.sa0, pb, self.sb0, self.sb1, bval, pc, self.sc0, self.sc1, cval, pz, self.sz,
                   zre, zim, g.data_ptr(), *ptrs, *self.tail, *consts)
        else:
            compiled.run(self.programs, 1, 1, handle, compiled.function, compiled.packed_metadata, None, None, None,
                         pa, self.sa0, pb, self.sb0, self.sb1, bval, pc, self.sc0, self.sc1, cval, pz, self.sz, zre,
                         zim, g.data_ptr(), *ptrs, *self.tail, *consts)
        return g

    def _launch_generic(self, where: Stream, a: torch.Tensor, bt: Any, ct: Any, bval: float, cval: float, zt: Any,
                        zre: float, zim: float) -> torch.Tensor:
        """The launch as the full path makes it (tensors, Triton's own launch on a new key); on CUDA it also
        remembers the compiled launcher once the pointers are aligned."""
        if self.zm == Z_COMPLEX_TENSOR:
            zt = torch.view_as_real(zt)
        g = self.alloc(*self.out_shape, dtype=torch.complex64, device=self.device)
        args = (a, self.sa0, bt, self.sb0, self.sb1, bval, ct, self.sc0, self.sc1, cval, zt, self.sz, zre, zim,
                torch.view_as_real(g), *self._buffers_for(where), *self.tail)
        launch(self.kernel, self.programs, args, self.meta, where)
        if self.cuda and self._entry is None and not any(
                isinstance(t, torch.Tensor) and t.data_ptr() & 15 for t in args):
            self._entry = compiled_launcher(self.kernel, args, self.meta, where)
            self._direct, self._direct_head = _direct_launch(self._entry)
        return g


def _direct_launch(entry: tuple[Any, tuple[Any, ...]] | None) -> tuple[Any, tuple[Any, ...]]:
    """(launch function, its arguments after the stream and function) of a compiled kernel whose launcher would only
    pass them on: Triton 3.6's ``CudaLauncher.__call__`` allocates the global and profile scratch (none for these
    kernels) and calls ``launch(grid, stream, function, cooperative, pdl, global_scratch, profile_scratch, ...)``.
    (None, ()) for any other launcher: the bound call then goes through ``compiled.run``."""
    run = getattr(entry[0], "run", None) if entry is not None else None
    if (type(run).__name__ != "CudaLauncher" or getattr(run, "global_scratch_size", None) != 0
            or getattr(run, "profile_scratch_size", None) != 0 or not callable(getattr(run, "launch", None))
            or not hasattr(run, "launch_cooperative_grid") or not hasattr(run, "launch_pdl")):
        return None, ()
    return run.launch, (run.launch_cooperative_grid, run.launch_pdl, None, None)


class BoundVjp(BoundOperands):
    """The backward of one signature: ``bound(a, b, c, z, g, grad_g, need_a, need_z) -> (grad_a (B, N) float32 |
    None, grad_z (B,) complex64 | None)`` as ``triton_fused.vjp_call`` returns them, or None (a number not finite)
    to hand the call back to the full path. ``g`` and ``grad_g``: complex, G's shape (leading dims of ``a``, N).
    One launch of the fast backward kernel per call: on CUDA, after the first, a :class:`DirectLaunch` of the
    compiled kernel; :func:`launch` while a graph is captured, a launch hook is set, a pointer is not 16-byte
    aligned or the current device is another."""

    def __init__(self, *, kernel: Any, programs: int, metas: dict[bool, tuple[tuple[str, Any], ...]],
                 tail: tuple[Any, ...], nch: int, scratch_floats: int, **operands: Any) -> None:
        super().__init__(**operands)
        self.kernel, self.programs, self.metas, self.tail = kernel, programs, metas, tail
        self.nch, self.scratch_floats = nch, scratch_floats
        self._buffers: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # per stream
        self._direct: dict[bool, DirectLaunch] = {}  # per need_z, once its kernel ran through launch()

    def __call__(self, a: torch.Tensor, b: Any, c: Any, z: Any, g: torch.Tensor, grad_g: torch.Tensor,
                 need_a: bool, need_z: bool) -> tuple[Any, Any] | None:
        ops = self._operands(a, b, c, z)
        if ops is None:
            return None
        bt, ct, bval, cval, zt, zre, zim = ops
        if self.zm == Z_COMPLEX_TENSOR:
            zt = torch.view_as_real(zt)
        where = Stream.current(self.device)
        bufs = None if where.fresh else self._buffers.get(where.handle)
        if bufs is None:
            bufs = fold_buffers(where, self.batch, self.nch, self.scratch_floats)
            if not where.fresh:
                self._buffers[where.handle] = bufs
        out = self.alloc(*self.shape, dtype=torch.complex64 if need_z else torch.float32, device=self.device)
        gv = torch.view_as_real(g.contiguous())
        gg = torch.view_as_real(grad_g.to(torch.complex64).contiguous())
        args = (a, self.sa0, bt, self.sb0, self.sb1, bval, ct, self.sc0, self.sc1, cval, zt, self.sz, zre, zim,
                gv, gg, torch.view_as_real(out) if need_z else out, *bufs, *self.tail)
        direct = self._direct.get(need_z) if self.cuda else None
        if direct is None or not direct(self.programs, where, self.index, args):
            launch(self.kernel, self.programs, args, self.metas[need_z], where)
            if self.cuda and direct is None:
                entry = compiled_launcher(self.kernel, args, self.metas[need_z], where)
                if entry is not None:
                    self._direct[need_z] = DirectLaunch(entry)
        return grads_of(out, need_a, need_z)


def grads_of(res: torch.Tensor, need_a: bool, need_z: bool) -> tuple[Any, Any]:
    """(grad_a, grad_z) from the backward kernel's result: ``res`` = -Re S (B, N) float32, or S (B, N) complex64
    when ``need_z`` (grad_a = -Re S, grad_z = conj(sum_j S_j); physical conjugate: see ``_pivot_common``)."""
    grad_a = (-res.real if need_z else res) if need_a else None
    return grad_a, (torch.conj_physical(res.sum(dim=1)) if need_z else None)


class DirectLaunch:
    """A compiled kernel called with integer pointers, as :class:`BoundForward` calls its own: the launcher's launch
    function itself when :func:`_direct_launch` finds one (Triton 3.6's ``CudaLauncher``), else ``compiled.run``.
    ``entry``: (compiled kernel, trailing constants) from :func:`compiled_launcher`, i.e. the kernel that
    :func:`launch` ran for arguments of the same dtypes, integers and pointer alignment."""

    def __init__(self, entry: tuple[Any, tuple[Any, ...]]) -> None:
        self.compiled, self.consts = entry
        self.fn, self.head = _direct_launch(entry)

    def __call__(self, programs: int, where: Stream, index: int, args: tuple[Any, ...]) -> bool:
        """Launch ``args`` (tensors and numbers, :func:`launch`'s order) on ``where``; False (nothing launched) when
        the call must take :func:`launch`: capturing, a launch hook, an unaligned pointer, another current device."""
        if (torch._C._cuda_isCurrentStreamCapturing() or torch._C._cuda_getDevice() != index or hooks_active()):
            return False
        flat = [v.data_ptr() if isinstance(v, torch.Tensor) else v for v in args]
        if any(isinstance(v, torch.Tensor) and p & 15 for v, p in zip(args, flat)):
            return False
        compiled = self.compiled
        if self.fn is not None:
            self.fn(programs, 1, 1, where.handle, compiled.function, *self.head, compiled.packed_metadata, None, None,
                    None, *flat, *self.consts)
        else:
            compiled.run(programs, 1, 1, where.handle, compiled.function, compiled.packed_metadata, None, None, None,
                         *flat, *self.consts)
        return True


class BoundGradForward:
    """The eager forward of a signature whose ``a`` (or tensor ``z``) requires grad: ``bound(a, b, c, z) -> G`` with
    a ``_BoundGreen`` autograd node (its backward is ``vjp``), or None to hand the call back to the full path."""

    def __init__(self, forward: BoundForward, vjp: BoundVjp) -> None:
        self.forward, self.vjp = forward, vjp

    def __call__(self, a: torch.Tensor, b: Any, c: Any, z: Any) -> torch.Tensor | None:
        g = self.forward(a, b, c, z)
        if g is None:
            return None
        zt = z if isinstance(z, torch.Tensor) else None
        return _BoundGreen.apply(a, zt, (self.vjp, b, c, z, g))


class _BoundGreen(torch.autograd.Function):
    """Attaches the bound backward to a G computed by the bound forward (``held``: (vjp, b, c, z, G); G travels
    inside the tuple so autograd sees it as this node's output, not an input)."""

    @staticmethod
    def forward(ctx, a, zt, held):  # type: ignore[override]
        vjp, b, c, z, g = held
        tensors = [x if isinstance(x, torch.Tensor) else None for x in (b, c, z)]
        ctx.save_for_backward(a, g, *tensors)  # saved: an in-place change before backward is an error
        ctx.numbers = [None if t is not None else x for t, x in zip(tensors, (b, c, z))]
        ctx.vjp = vjp
        ctx.a_dtype = a.dtype
        ctx.z_dtype = zt.dtype if zt is not None else None
        return g

    @staticmethod
    def backward(ctx, grad_g):  # type: ignore[override]
        a, g, *tensors = ctx.saved_tensors
        b, c, z = (t if t is not None else x for t, x in zip(tensors, ctx.numbers))
        need_a, need_z = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_a, grad_z = ctx.vjp(a, b, c, z, g, grad_g, need_a, need_z)  # its numbers were checked by the forward
        if grad_a is not None:
            grad_a = grad_a.reshape(a.shape)
        if grad_z is not None:  # per chain; summed over the chains a broadcast z stood for
            grad_z = grad_z.reshape(a.shape[:-1]).sum_to_size(z.shape)
        return (*as_input_dtypes(grad_a, grad_z, ctx.a_dtype, ctx.z_dtype), None)


def as_input_dtypes(grad_a: Any, grad_z: Any, a_dtype: torch.dtype, z_dtype: torch.dtype | None) -> tuple[Any, Any]:
    """The gradients in the dtypes of ``a`` and of the shift tensor (a real shift gets the real part)."""
    if grad_z is not None:
        grad_z = (grad_z if z_dtype.is_complex else grad_z.real).to(z_dtype)
    if grad_a is not None:
        grad_a = grad_a.to(a_dtype)
    return grad_a, grad_z
