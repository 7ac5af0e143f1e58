"""The public entry point: :func:`bk_core`."""

from __future__ import annotations

from typing import Any

import torch

from bkbench.registry import Implementation, Registry, default_registry
from bkbench.validate import HALF_DTYPES, check_result, normalize


def bk_core(
    a: torch.Tensor,
    b: torch.Tensor | float,
    c: torch.Tensor | float,
    z: complex | torch.Tensor = 1j,
    *,
    impl: str = "auto",
    registry: Registry | None = None,
    check_finite: bool = True,
    **options: Any,
) -> torch.Tensor:
    """Diagonal of the tridiagonal resolvent, ``G[..., i] = ((T - zI)^-1)_ii``.

    Args:
        a: (..., N) diagonal, real (float32/float64/bfloat16/float16) or complex (complex64/complex128).
        b: (..., N-1) super-diagonal, same leading dims as ``a``, or a number (uniform coupling).
        c: (..., N-1) sub-diagonal, same leading dims as ``a``, or a number.
        z: complex shift: a number or a tensor broadcastable to ``a.shape[:-1]`` (one shift per chain).
        impl: registry name (``bkbench.implementations()``), or ``"auto"`` for the dispatcher's choice.
        registry: the registry to look ``impl`` up in (default: the discovered one).
        check_finite: raise :class:`~bkbench.validate.NonFiniteResultError` when G has inf/NaN.
        **options: passed to the implementation (e.g. ``window=8`` for ``lut_green``).

    Returns:
        G of shape ``a.shape``: complex64 for float32/bf16/fp16 work, complex128 when any input is float64
        (or complex128); on the device of ``a``. Differentiable w.r.t. ``a`` (and ``z``) when the implementation
        is (``Implementation.differentiable``).

    Raises:
        ValueError: bad shapes, dtypes, devices, NaN/Inf inputs, unknown ``impl``, or a non-finite result.
    """
    reg = registry if registry is not None else default_registry()
    norm = normalize(a, b, c, z)
    rec = _choose(reg, impl, norm)
    _check_fits(rec, norm, a, b, c)
    work_a = norm.a
    if work_a.dtype not in rec.dtypes:
        work_a = work_a.to(torch.float32) if work_a.dtype in HALF_DTYPES else work_a
        if work_a.dtype not in rec.dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in rec.dtypes)
            raise ValueError(
                f"a: dtype {str(norm.a.dtype).replace('torch.', '')} is not supported by impl {rec.name!r} "
                f"(it takes {names}); convert a or choose another impl"
            )
    g = rec.fn(work_a, norm.k, norm.z, **{**rec.defaults, **options})
    if check_finite:
        check_result(g, rec.name)
    return g.reshape(*norm.lead, g.shape[-1])


def _choose(reg: Registry, impl: str, norm: Any) -> Implementation:
    if impl == "auto":
        from bkbench.dispatch import choose

        # complex a is handed over as complex: only implementations that take it may be chosen
        dtype = norm.a.dtype if norm.a.is_complex() else norm.compute
        return reg.get(choose(norm.a.device.type, dtype, norm.a.shape[0], norm.a.shape[1], reg).impl)
    if not isinstance(impl, str):
        raise ValueError(f"impl: expected a registry name or 'auto', got {type(impl).__name__}")
    rec = reg.get(impl)
    if rec.kind != "bk":
        raise ValueError(f"impl: {impl!r} is a {rec.kind} baseline, not a BK-core implementation")
    return rec


def _check_fits(rec: Implementation, norm: Any, a: torch.Tensor, b: Any, c: Any) -> None:
    dev = norm.a.device.type
    if dev not in rec.devices:
        raise ValueError(
            f"a: device {dev} is not supported by impl {rec.name!r} (it runs on {', '.join(rec.devices)}); "
            "move the inputs or choose another impl"
        )
    reason = rec.unavailable_reason()
    if reason:
        raise ValueError(f"impl: {rec.name!r} is not available here: {reason}")
    if torch.is_grad_enabled():
        if a.requires_grad and not rec.differentiable:
            raise ValueError(f"a: requires grad but impl {rec.name!r} is not differentiable; use impl='thomas'")
        for name, t in (("b", b), ("c", c)):
            if isinstance(t, torch.Tensor) and t.requires_grad:
                raise ValueError(
                    f"{name}: requires grad, but BK-core gradients are implemented w.r.t. a and z only; "
                    f"pass {name}.detach()"
                )
