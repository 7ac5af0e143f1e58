"""The BK-core as PyTorch operators: ``torch.ops.bkbench.bk_core`` and its backward ``bk_core_backward``.

``torch.compile`` traces :func:`bkbench.bk_core` into one call of ``bkbench::bk_core``, so a model that calls it
compiles with ``fullgraph=True``; eager calls run the same implementation without the operator's dispatch. The
operator's implementation is the eager call (``eager.eager_call``), bound launch included. The operator takes the
user's inputs as they are: a number ``b``, ``c`` or ``z`` travels as (re, im) floats with its tensor argument None.

Registration (``torch.library.Library``): a schema, one Python kernel for the CPU and CUDA keys, a fake
implementation, and an Autograd kernel of our own that calls the operator below autograd, through an autograd
Function when ``a`` or ``z`` requires grad. ``torch.library.custom_op`` would wrap the same kernels in several
Python layers (its autograd wrapper, a Python redispatch, a dynamo-disabling wrapper, an alias check). Measured
with ``bench/op_host_cpu.py`` on the development CPU (kernel launches stubbed out; custom_op's tree and this one
run alternately, two runs each): the forward operator 35.4-36.0 against 28.1-28.2 µs per call, the backward
operator 48.8-49.1 against 38.6 µs, and one training step of ``bench/compile_model_h200.py``'s 4-block model
compiled (B = 2, N = 64, d = 8) 1538-1573 against 1326-1328 µs (eager 963-994 µs; the same model without the
BK-core compiled: 604-666 µs). ``torch.library.opcheck`` checks the registration (``tests/test_op.py``).

The operator returns G as its real view (``a.shape + (2,)``, float32 or float64: ``torch.view_as_real(G)``) and the
traced call wraps it in ``torch.view_as_complex``: inductor generates no code for complex tensors, so the
operator's output and cotangent stay real in the graph and the backward operator takes the real cotangent. (The
backward of a model's own ``G.real`` / ``G.imag`` still builds complex cotangents, which inductor runs as eager
complex kernels: measured on the H200, the real view did not change a compiled step's time.) Both operators run
their implementation inside ``bkbench.workspace.operator_workspace(device)``: off the device's default stream (where
inductor's CUDA-graph trees warm up) it keeps no buffer a CUDA-graph pool could adopt.

Backward: ``bkbench::bk_core_backward`` returns (grad_a, grad_z) from the implementation's explicit
vector-Jacobian product (the registry record's ``vjp``: ``triton_fused``'s Triton kernels, the pivot form's F/R
recurrences for ``thomas`` and ``assoc_scan``).
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor

from bkbench import bound_calls
from bkbench.eager import check_options, eager_call, resolve
from bkbench.registry import default_registry
from bkbench.validate import WIDE_DTYPES, CallArgs, call_args
from bkbench.workspace import operator_workspace

NAMESPACE = "bkbench"


def _number(re: float, im: float) -> float | complex:
    return complex(re, im) if im != 0.0 else float(re)


def _split(x: Any) -> tuple[Tensor | None, float, float]:
    """(tensor or None, re, im) of a tensor-or-number argument."""
    if isinstance(x, Tensor):
        return x, 0.0, 0.0
    x = complex(x)
    return None, x.real, x.imag


def _values(b: Tensor | None, c: Tensor | None, z: Tensor | None, b_re: float, b_im: float, c_re: float,
            c_im: float, z_re: float, z_im: float) -> tuple[Any, Any, Any]:
    """(b, c, z) as the user gave them: a tensor, or the number the operator carried as (re, im)."""
    return (b if b is not None else _number(b_re, b_im), c if c is not None else _number(c_re, c_im),
            z if z is not None else complex(z_re, z_im))


def _out_real_dtype(*tensors: Tensor | None) -> torch.dtype:
    """The dtype of G's real view: float64 when any tensor input is float64/complex128, else float32."""
    wide = any(t is not None and t.dtype in WIDE_DTYPES for t in tensors)
    return torch.float64 if wide else torch.float32


_LIB = torch.library.Library(NAMESPACE, "DEF")  # kept for the life of the process
_NUMBERS = "float b_re, float b_im, float c_re, float c_im, float z_re, float z_im, str impl, str options"
_LIB.define(f"bk_core(Tensor a, Tensor? b, Tensor? c, Tensor? z, {_NUMBERS}, bool needs_grad) -> Tensor")
_LIB.define(f"bk_core_backward(Tensor grad, Tensor g, Tensor a, Tensor? b, Tensor? c, Tensor? z, {_NUMBERS}, "
            "bool need_a, bool need_z) -> (Tensor, Tensor)")
bk_core_op = torch.ops.bkbench.bk_core.default
bk_core_backward_op = torch.ops.bkbench.bk_core_backward.default


def _bk_core_impl(a: Tensor, b: Tensor | None, c: Tensor | None, z: Tensor | None, b_re: float, b_im: float,
                  c_re: float, c_im: float, z_re: float, z_im: float, impl: str, options: str,
                  needs_grad: bool) -> Tensor:
    """G = bk_core(a, b, c, z) as its real view, shape ``a.shape + (2,)`` (float32, or float64 for float64 work); a
    number b, c or z: its tensor None and its (re, im) given. ``options``: the implementation's options as JSON;
    ``needs_grad``: pick a differentiable implementation for ``impl="auto"``."""
    bv, cv, zv = _values(b, c, z, b_re, b_im, c_re, c_im, z_re, z_im)
    opts = json.loads(options) if options != "{}" else {}
    # No torch.no_grad(): this runs with the autograd keys excluded (below the Autograd kernel, or inside its
    # _AutoDispatchBelowAutograd), so nothing records a graph, and eager_call given ``differentiable`` attaches no
    # autograd Function. (no_grad cost 3.6 us per call on the development CPU: a compiled graph pays it per step.)
    with operator_workspace(a.device):  # no kept buffer where a graph pool could adopt it
        g = eager_call(a, bv, cv, zv, impl, False, None, opts, differentiable=needs_grad)
    return torch.view_as_real(g.contiguous())  # the fake's layout (some implementations return views)


@torch.library.register_fake(f"{NAMESPACE}::bk_core", lib=_LIB)
def _bk_core_fake(a, b, c, z, b_re, b_im, c_re, c_im, z_re, z_im, impl, options, needs_grad):
    return a.new_empty((*a.shape, 2), dtype=_out_real_dtype(a, b, c, z))


def _bk_core_backward_impl(grad: Tensor, g: Tensor, a: Tensor, b: Tensor | None, c: Tensor | None,
                           z: Tensor | None, b_re: float, b_im: float, c_re: float, c_im: float, z_re: float,
                           z_im: float, impl: str, options: str, need_a: bool, need_z: bool) -> tuple[Tensor, Tensor]:
    """(grad_a of ``a``'s shape and dtype, grad_z of ``z``'s shape and dtype) for the cotangent ``grad`` of G;
    ``grad`` and ``g`` are real views (``a.shape + (2,)``, as :func:`bk_core_op` returns G). An input whose
    gradient is not needed gets an empty tensor."""
    need_z = need_z and z is not None
    bv, cv, zv = _values(b, c, z, b_re, b_im, c_re, c_im, z_re, z_im)
    key = None
    if options == "{}":  # a signature seen before: its bound backward (bkbench.bound_calls)
        key = bound_calls.signature(a, bv, cv, zv, impl, default_registry(),
                                    ("vjp", need_a, need_z, grad.shape, grad.dtype, g.dtype))
        launch = bound_calls.bound(key) if key is not None else None
        if launch is not None:
            with operator_workspace(a.device):
                res = launch(a, bv, cv, zv, torch.view_as_complex(g.contiguous()),
                             torch.view_as_complex(grad.contiguous()), need_a, need_z)
            if res is not None:
                return _grads_like(res, a, z, need_a, need_z, tuple(a.shape[:-1]))
    args = call_args(a, bv, cv, zv)
    rec = resolve(default_registry(), impl, args, True)
    if rec.vjp is None:
        raise ValueError(f"impl: {rec.name!r} has no explicit vector-Jacobian product (registry field vjp), which "
                         "its gradient needs under torch.compile; use thomas, assoc_scan or triton_fused")
    gc = torch.view_as_complex(g.contiguous()).reshape(args.batch, args.n)
    gradc = torch.view_as_complex(grad.contiguous()).reshape(args.batch, args.n)
    with operator_workspace(a.device):
        res = rec.vjp(args, gc, gradc, need_a, need_z, **check_options(rec, json.loads(options)))
    if key is not None and not bound_calls.known(key):
        bound_calls.remember(key, rec, args, (a, bv, cv, zv), True, backward=True)
    return _grads_like(res, a, z, need_a, need_z, args.lead)


def _grads_like(res: tuple[Any, Any], a: Tensor, z: Tensor | None, need_a: bool, need_z: bool,
                lead: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    ga, gz = res
    grad_a = _like(ga, a, lead) if need_a else a.new_empty(0)
    grad_z = _like(gz, z, lead) if need_z else a.new_empty(0)
    return grad_a, grad_z


def _like(grad: Tensor, x: Tensor, lead: tuple[int, ...]) -> Tensor:
    """``grad`` (per chain for z, per element for a) summed back to ``x``'s shape (``x`` may have been broadcast
    to the chains ``lead``) and cast to its dtype."""
    if grad.shape != x.shape:
        grad = grad.reshape(*lead, *grad.shape[1:]) if grad.dim() == 1 else grad.reshape(x.shape)
        grad = grad.sum_to_size(x.shape) if x.dim() else grad.sum()
    if not x.is_complex() and grad.is_complex():
        grad = grad.real
    return grad.to(x.dtype).contiguous()


@torch.library.register_fake(f"{NAMESPACE}::bk_core_backward", lib=_LIB)
def _bk_core_backward_fake(grad, g, a, b, c, z, b_re, b_im, c_re, c_im, z_re, z_im, impl, options, need_a, need_z):
    grad_a = torch.empty_like(a) if need_a else a.new_empty(0)
    grad_z = torch.empty_like(z) if need_z and z is not None else a.new_empty(0)
    return grad_a, grad_z


class _BKCoreFunction(torch.autograd.Function):
    """The operator's autograd: the forward below autograd, the backward one ``bkbench::bk_core_backward``."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor | None, c: Tensor | None, z: Tensor | None, *numbers: Any) -> Tensor:
        with torch._C._AutoDispatchBelowAutograd():
            out = bk_core_op(a, b, c, z, *numbers)
        ctx.save_for_backward(a, b, c, z, out)
        ctx.scalars = numbers[:8]  # b_re, b_im, c_re, c_im, z_re, z_im, impl, options
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b, c, z, g = ctx.saved_tensors
        need_a, need_z = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        if not (need_a or need_z):
            return (None,) * 13
        grad_a, grad_z = bk_core_backward_op(grad, g, a, b, c, z, *ctx.scalars, need_a, need_z)
        return (grad_a if need_a else None, None, None, grad_z if need_z else None) + (None,) * 9


class _NoDoubleBackward(torch.autograd.Function):
    """The backward operator when an input requires grad (``create_graph=True``): its result, and an error if
    anything differentiates through it."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> tuple[Tensor, Tensor]:
        with torch._C._AutoDispatchBelowAutograd():
            return bk_core_backward_op(*args)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[None, ...]:
        raise RuntimeError("bkbench::bk_core_backward: the BK-core has no second derivative (double backward)")


def _wants_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# dispatch keys that change an operator call below autograd (modes, subclasses, functionalization, functorch)
_BELOW_AUTOGRAD = (torch._C.DispatchKeySet(torch._C.DispatchKey.Python)
                   | torch._C.DispatchKeySet(torch._C.DispatchKey.Functionalize)
                   | torch._C.DispatchKeySet(torch._C.DispatchKey.FuncTorchDynamicLayerBackMode)).raw_repr()


def _bk_core_autograd(a: Tensor, b: Tensor | None, c: Tensor | None, z: Tensor | None, *numbers: Any) -> Tensor:
    """The operator's Autograd kernel: the autograd Function when ``a`` or ``z`` requires grad, else the call below
    autograd (one dispatch; ``torch.library.custom_op``'s generic wrapper costs several Python layers more)."""
    if _wants_grad(a, z):
        _reject_coupling_grad_op(b, c)
        return _BKCoreFunction.apply(a, b, c, z, *numbers)
    with torch._C._AutoDispatchBelowAutograd():
        if _nothing_below_autograd(a, b, c, z):  # what a compiled graph runs: the implementation, one dispatch saved
            return _bk_core_impl(a, b, c, z, *numbers)
        return bk_core_op(a, b, c, z, *numbers)


def _nothing_below_autograd(*tensors: Tensor | None) -> bool:
    """Whether the operator's dispatch below its Autograd kernel would reach the CPU / CUDA kernel unchanged: no
    dispatch mode is active (fake tensors, functionalization, tracing, a user's TorchDispatchMode) and every tensor
    is a plain one (no subclass, functional or functorch wrapper). Then the Autograd kernel calls the implementation
    itself instead of dispatching again."""
    if torch._C._len_torch_dispatch_stack() or torch._C._dispatch_tls_local_include_set().raw_repr() & _BELOW_AUTOGRAD:
        return False
    for t in tensors:
        if t is not None and (type(t) is not Tensor or torch._C._dispatch_keys(t).raw_repr() & _BELOW_AUTOGRAD):
            return False
    return True


def _reject_coupling_grad_op(b: Tensor | None, c: Tensor | None) -> None:
    if _wants_grad(b, c):
        raise ValueError("b, c: BK-core gradients are implemented w.r.t. a and z only; pass the couplings detached")


def _bk_core_backward_autograd(*args: Any) -> tuple[Tensor, Tensor]:
    if _wants_grad(*args[:6]):  # grad, g, a, b, c, z
        return _NoDoubleBackward.apply(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return bk_core_backward_op(*args)


for _key in ("CPU", "CUDA"):
    _LIB.impl("bk_core", _bk_core_impl, _key)
    _LIB.impl("bk_core_backward", _bk_core_backward_impl, _key)
_LIB.impl("bk_core", _bk_core_autograd, "Autograd")
_LIB.impl("bk_core_backward", _bk_core_backward_autograd, "Autograd")


def options_json(options: dict[str, Any]) -> str:
    """Options as the operator carries them (JSON); ValueError when one is not JSON-serialisable."""
    if not options:
        return "{}"
    return _options_json(options)


@torch.compiler.assume_constant_result  # evaluated while tracing: the JSON string is a constant of the graph
def _options_json(options: dict[str, Any]) -> str:
    try:
        return json.dumps(options, sort_keys=True)
    except TypeError:
        raise ValueError("options: under torch.compile options must be JSON values (numbers, strings, lists, "
                         "dicts); pass a config as a dict") from None


def traced_call(a: Tensor, b: Any, c: Any, z: Any, impl: str, options: dict[str, Any], needs_grad: bool,
                args: CallArgs) -> Tensor:
    """What :func:`bkbench.bk_core` is under ``torch.compile``: one ``bkbench::bk_core`` call, its real view made
    complex again (the implementation is resolved when the operator runs; shape, dtype and device errors were
    raised while tracing)."""
    bt, b_re, b_im = _split(args.b if not isinstance(b, Tensor) else b)
    ct, c_re, c_im = _split(args.c if not isinstance(c, Tensor) else c)
    zt, z_re, z_im = _split(args.z if not isinstance(z, Tensor) else z)
    return torch.view_as_complex(
        bk_core_op(a, bt, ct, zt, b_re, b_im, c_re, c_im, z_re, z_im, impl, options_json(options), needs_grad))
