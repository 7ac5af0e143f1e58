"""Eager :func:`bkbench.bk_core` calls by signature: the full path once, a bound launch after.

What the full path of a call works out — the metadata checks' verdict, the implementation, its configuration and
launch parameters — depends only on the call's *signature*: the implementation asked for, the registry's size, the
grad mode (or, for the ``bkbench::bk_core`` operator's implementation, whether it must pick a differentiable
implementation), and per argument its type or, for a tensor, its shape, strides, dtype, device and ``requires_grad``.
After a call succeeds on the full path, an implementation with a ``bind`` entry (``Implementation.bind``) may return
a launch with everything but the data fixed; it is kept here under the signature and later calls of that signature
go straight to it. What depends on values stays per call (the bound launch converts and checks Python numbers,
reads pointers and the current stream) and a bound launch may hand a call back (None), which then takes the full
path: so a call gets the same result and the same errors either way.

Only calls without options, a custom registry or value checks are bound, and only when the call's normalised views
read the user's tensors in place (``a`` itself or its leading dims flattened; ``b``, ``c``, ``z`` themselves or
broadcast views of them, e.g. per-position couplings (N-1,) shared by every chain); a view that needed a copy (a
broadcast over flattened leading dims) is not bound. ``torch.compile`` traces the operator; the
operator's implementation, run by the compiled graph, comes here too, and so does its backward operator (keys
whose mode starts with ``"vjp"``, launches from ``Implementation.bind_vjp``).
"""

from __future__ import annotations

from typing import Any

import torch

from bkbench.registry import Implementation, Registry
from bkbench.validate import CallArgs

_PLAIN = (torch.Tensor, torch.nn.Parameter)  # tensor subclasses (fake, functional, DTensor) take the full path
_BOUND: dict[tuple[Any, ...], Any] = {}
_MAX_ENTRIES = 1024
_NOT_BOUND = object()  # a signature whose calls always take the full path


def _arg(x: Any) -> Any:
    if type(x) in _PLAIN:
        return (x.shape, x.stride(), x.dtype, x.device, x.requires_grad)
    return type(x)


def signature(a: Any, b: Any, c: Any, z: Any, impl: Any, reg: Registry, mode: Any) -> tuple[Any, ...] | None:
    """The key a call's bound launch is kept under, or None for a call that is never bound (``a`` not a plain
    tensor, ``impl`` not a string). ``mode``: what else decides the call (the grad mode of a user's call; the
    operator's ``("op", differentiable)``)."""
    if type(a) not in _PLAIN or type(impl) is not str:
        return None
    return (impl, id(reg), len(reg), mode, _arg(a), _arg(b), _arg(c), _arg(z), b is c)


def bound(key: tuple[Any, ...]) -> Any:
    """The bound launch kept under ``key``, or None."""
    hit = _BOUND.get(key)
    return None if hit is None or hit is _NOT_BOUND else hit


def known(key: tuple[Any, ...]) -> bool:
    """Whether ``key`` has been through :func:`remember` (bound or not)."""
    return key in _BOUND


def remember(key: tuple[Any, ...], rec: Implementation, args: CallArgs, inputs: tuple[Any, Any, Any, Any],
             needs_grad: bool, backward: bool = False) -> None:
    """After a full-path call of ``key`` succeeded with ``rec``: keep ``rec.bind``'s launch (``rec.bind_vjp``'s
    for the operator's ``backward``), or that there is none. ``inputs``: the user's (a, b, c, z)."""
    launch = None
    bind = rec.bind_vjp if backward else rec.bind
    if bind is not None and _views_are_inputs(args, inputs):
        launch = bind(args) if backward else bind(args, needs_grad)
    if len(_BOUND) >= _MAX_ENTRIES:
        _BOUND.clear()
    _BOUND[key] = launch if launch is not None else _NOT_BOUND


def clear() -> None:
    """Forget every bound launch (tests; a changed dispatch table)."""
    _BOUND.clear()


def _views_are_inputs(args: CallArgs, inputs: tuple[Any, Any, Any, Any]) -> bool:
    """Whether the call's normalised views read the user's tensors in place: each tensor itself or a view of it
    (``a``'s leading dims flattened, ``b``, ``c``, ``z`` broadcast: same memory, same dtype). A bound launch keeps
    the views' strides (fixed by the signature) and reads the user's tensors by pointer."""
    a, b, c, z = inputs
    return all(_reads_in_place(view, given) for view, given in ((args.a, a), (args.b, b), (args.c, c), (args.z, z))
               if isinstance(given, torch.Tensor))


def _reads_in_place(view: Any, given: torch.Tensor) -> bool:
    return view is given or (isinstance(view, torch.Tensor) and view.dtype == given.dtype
                             and view.data_ptr() == given.data_ptr() and view.device == given.device)
