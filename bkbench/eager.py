"""The eager call path of :func:`bkbench.bk_core`: which implementation runs (memoised per shape class) and
running it on the inputs as they are (a bound launch first when the signature was seen before: ``bound_calls``).

The ``bkbench::bk_core`` operator (``bkbench/op.py``) runs the same path below autograd (``differentiable`` a bool);
:mod:`bkbench.api` calls it for a user's eager call. Value checks run only when :func:`checks_on` says so (they
synchronise): ``check=True``, the :func:`checked` context, or ``BKBENCH_CHECK=1``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
from collections.abc import Iterator
from typing import Any

import torch

from bkbench import bound_calls
from bkbench.registry import Implementation, Registry, default_registry
from bkbench.validate import CallArgs, call_args, check_result, check_values, working_a

_CHECKED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("bkbench_checked", default=None)


_ENV_NAME = "BKBENCH_CHECK"
# os.environ's own mapping (CPython keeps it in _data under encoded keys; setenv and os.environ writes update it):
# a dict lookup per call instead of os.environ.get's encode and decode (~1 us of an eager call's ~10).
_ENV_DATA: Any = getattr(os.environ, "_data", None)
_ENV_KEY: Any = os.environ.encodekey(_ENV_NAME) if hasattr(os.environ, "encodekey") else None


def _env_checked() -> bool:
    if _ENV_DATA is not None and _ENV_KEY is not None:
        if _ENV_KEY not in _ENV_DATA:
            return False
    return os.environ.get(_ENV_NAME, "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def checked(enabled: bool = True) -> Iterator[None]:
    """Within this context, :func:`bk_core` calls with ``check=None`` run the value checks (and synchronise)."""
    token = _CHECKED.set(bool(enabled))
    try:
        yield
    finally:
        _CHECKED.reset(token)


def checks_on(check: bool | None) -> bool:
    """Whether a call runs the value checks: ``check`` if given, else the :func:`checked` context, else
    ``BKBENCH_CHECK``."""
    if check is not None:
        return bool(check)
    ctx = _CHECKED.get()
    return ctx if ctx is not None else _env_checked()


def eager_call(a: Any, b: Any, c: Any, z: Any, impl: str, check: bool | None, registry: Registry | None,
               options: dict[str, Any], differentiable: bool | None = None) -> torch.Tensor:
    """:func:`bk_core` outside ``torch.compile``. ``differentiable`` None: a user's call (autograd attached when an
    input requires grad); a bool: the ``bkbench::bk_core`` operator's implementation, which runs below autograd
    and picks a differentiable implementation when ``differentiable`` (its backward is the operator's own)."""
    key = None
    if not options and registry is None and not checks_on(check):
        mode = torch.is_grad_enabled() if differentiable is None else ("op", differentiable)
        key = bound_calls.signature(a, b, c, z, impl, default_registry(), mode)
        if key is not None:
            launch = bound_calls.bound(key)
            if launch is not None:
                g = launch(a, b, c, z)
                if g is not None:
                    return g
    args = call_args(a, b, c, z)
    needs_grad = False
    if differentiable is not None:
        pick_grad = differentiable
    else:
        if torch.is_grad_enabled():
            reject_coupling_grad(b, c)
            needs_grad = a.requires_grad or (isinstance(z, torch.Tensor) and z.requires_grad)
        pick_grad = needs_grad
    on = checks_on(check)
    if on:
        check_values(args)
    rec = resolve(registry if registry is not None else default_registry(), impl, args, pick_grad)
    g = run(rec, args, needs_grad, options)
    if on:
        check_result(g, rec.name, args)
    if key is not None and not bound_calls.known(key):
        bound_calls.remember(key, rec, args, (a, b, c, z), needs_grad)
    return g if len(args.lead) == 1 else g.reshape(*args.lead, args.n)


def reject_coupling_grad(b: Any, c: Any) -> None:
    for name, t in (("b", b), ("c", c)):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise ValueError(
                f"{name}: requires grad, but BK-core gradients are implemented w.r.t. a and z only; "
                f"pass {name}.detach()"
            )


# --------------------------------------------------------------------------------------------------------
# which implementation, and running it
# --------------------------------------------------------------------------------------------------------


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _shape_class(args: CallArgs, impl: str, needs_grad: bool) -> tuple[Any, ...]:
    """What the choice of implementation depends on (``auto`` also on the shape bucket)."""
    cls = (args.device.type, args.a.dtype, args.compute, args.a.is_complex(), args.complex_couplings, needs_grad)
    if impl == "auto":
        from bkbench.dispatch import bucket

        cls += (bucket(args.batch, args.n),)
    return cls


_RESOLVED: dict[tuple[Any, ...], Implementation] = {}


def resolve(reg: Registry, impl: str, args: CallArgs, needs_grad: bool) -> Implementation:
    """The implementation a call runs (memoised per registry, name and shape class); ValueError when it cannot
    take these inputs."""
    if not isinstance(impl, str):
        raise ValueError(f"impl: expected a registry name or 'auto', got {type(impl).__name__}")
    key = (id(reg), len(reg), impl, *_shape_class(args, impl, needs_grad))
    rec = _RESOLVED.get(key)
    if rec is None:
        rec = _choose(reg, impl, args, needs_grad)
        _check_fits(rec, args, needs_grad)
        _RESOLVED[key] = rec
    return rec


def _choose(reg: Registry, impl: str, args: CallArgs, needs_grad: bool) -> Implementation:
    if impl == "auto":
        from bkbench.dispatch import choose

        # complex inputs are handed over as complex: only implementations that take them may be chosen
        dtype = args.out_dtype if (args.a.is_complex() or args.complex_couplings) else args.compute
        return reg.get(choose(args.device.type, dtype, args.batch, args.n, reg, needs_grad=needs_grad).impl)
    rec = reg.get(impl)
    if rec.kind != "bk":
        raise ValueError(f"impl: {impl!r} is a {rec.kind} baseline, not a BK-core implementation")
    return rec


def _check_fits(rec: Implementation, args: CallArgs, needs_grad: bool) -> None:
    dev = args.device.type
    if dev not in rec.devices:
        raise ValueError(
            f"a: device {dev} is not supported by impl {rec.name!r} (it runs on {', '.join(rec.devices)}); "
            "move the inputs or choose another impl"
        )
    reason = rec.unavailable_reason()
    if reason:
        raise ValueError(f"impl: {rec.name!r} is not available here: {reason}")
    if needs_grad and not rec.differentiable:
        raise ValueError(f"a: requires grad but impl {rec.name!r} is not differentiable; use impl='thomas'")
    work = working_dtype(args, rec)
    if work not in rec.dtypes:
        names = ", ".join(_dtype_name(d) for d in rec.dtypes)
        raise ValueError(
            f"a: these inputs compute in {_dtype_name(work)} (a is {_dtype_name(args.a.dtype)}; any float64 or "
            f"complex128 tensor input makes the work float64), which impl {rec.name!r} does not take (it takes "
            f"{names}); convert the inputs or choose another impl"
        )
    if args.complex_couplings and not any(d.is_complex for d in rec.dtypes):
        raise ValueError(f"b, c: complex couplings are not supported by impl {rec.name!r}; use impl='thomas'")


def working_dtype(args: CallArgs, rec: Implementation) -> torch.dtype:
    """The dtype ``a`` reaches ``rec`` in (``validate.working_a``), or a complex one when the couplings are
    complex: a half type as it is when ``rec`` takes it in float32 work, else the compute precision."""
    if args.a.dtype in (torch.float16, torch.bfloat16) and args.compute == torch.float32:
        return args.a.dtype if args.a.dtype in rec.dtypes else torch.float32
    if args.a.is_complex() or args.complex_couplings:
        return args.out_dtype
    return args.compute


@functools.lru_cache(maxsize=256)
def _accepted_options(fn: Any) -> tuple[frozenset[str], bool]:
    """(keyword options ``fn`` takes after (a, k, z), whether it takes any **kwargs)."""
    params = list(inspect.signature(fn).parameters.values())[3:]
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def check_options(rec: Implementation, options: dict[str, Any]) -> dict[str, Any]:
    """The implementation's defaults updated with ``options``; ValueError naming an option it does not take."""
    if options:
        names, anything = _accepted_options(rec.fn)
        unknown = sorted(set(options) - names)
        if unknown and not anything:
            takes = ", ".join(sorted(names)) or "none"
            raise ValueError(f"options: impl {rec.name!r} takes no option {', '.join(map(repr, unknown))} "
                             f"(its options: {takes})")
    return {**rec.defaults, **options} if rec.defaults else dict(options)


def run(rec: Implementation, args: CallArgs, needs_grad: bool, options: dict[str, Any]) -> torch.Tensor:
    """G (B, N) of ``rec`` for ``args``: through ``rec.call`` (the inputs as they are) when it has one, else in
    the registry calling convention (k = b * c and z formed in the compute precision)."""
    opts = check_options(rec, options)
    if rec.call is not None:
        return rec.call(args, needs_grad=needs_grad, **opts)
    return rec.fn(working_a(args, rec.dtypes), args.couplings(), args.shifts(), **opts)
