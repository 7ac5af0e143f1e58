"""The public entry points: :func:`bk_core`, :func:`bk_core_ex` and :func:`checked`.

A call checks metadata only (shapes, dtypes, devices: ``validate.call_args``), picks the implementation (memoised
per shape class, so an eager call reads no file) and runs it on the inputs as they are. Eager calls of a signature
seen before skip that work when the implementation can bind a launch (``bound_calls``; ``triton_fused``): about
one kernel launch of host time. It does no host
synchronisation and no data-dependent Python control flow, so it can be captured in a CUDA graph. Under
``torch.compile`` it becomes one ``bkbench::bk_core`` operator (``bkbench/op.py``); in eager mode the same
implementation is called directly (the operator's dispatch costs ~20 µs of host time per call). Eager calls whose
input requires grad bind their backward too. For a compiled model, ``mode="reduce-overhead"`` (CUDA-graph trees)
removes the compiled step's host time: on the H200 a small ResNet-BK model's training step took 0.41-0.48 of eager's
time that way, while the default mode took 1.25x eager's at that host-bound size and 0.74x at a GPU-bound one
(``reports/h200/2026-12-04/``, ``reports/h200/2026-12-05/``).

Value checks (NaN/Inf in a, b, c, z; a non-finite G) synchronise, so they are opt-in: ``check=True``, the
``bkbench.checked()`` context, or the environment variable ``BKBENCH_CHECK=1``. :func:`bk_core_ex` returns the
same verdicts per chain as a status tensor, without synchronising (as ``torch.linalg.inv_ex`` does).
"""

from __future__ import annotations

from typing import Any

import torch

from bkbench.eager import checked, eager_call, reject_coupling_grad  # noqa: F401  (checked: public here)
from bkbench.registry import Registry
from bkbench.validate import call_args, status


def bk_core(
    a: torch.Tensor,
    b: torch.Tensor | float,
    c: torch.Tensor | float,
    z: complex | torch.Tensor = 1j,
    *,
    impl: str = "auto",
    check: bool | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> torch.Tensor:
    """Diagonal of the tridiagonal resolvent, ``G[..., i] = ((T - zI)^-1)_ii``.

    Args:
        a: (..., N) diagonal, real (float32/float64/bfloat16/float16) or complex (complex64/complex128).
        b: (..., N-1) super-diagonal, broadcastable to ``a.shape[:-1] + (N-1,)`` (broadcast views are read in
            place), or a number (uniform coupling).
        c: (..., N-1) sub-diagonal, or a number, as ``b``.
        z: complex shift: a number or a tensor broadcastable to ``a.shape[:-1]`` (one shift per chain).
        impl: registry name (``bkbench.implementations()``), or ``"auto"`` for the dispatcher's choice (packaged
            measurements; a results database only when ``BKBENCH_DB`` names one; differentiable when an input
            requires grad).
        check: run the value checks (NaN/Inf inputs raise ``ValueError`` naming the argument, a non-finite G
            raises :class:`~bkbench.validate.NonFiniteResultError`); they synchronise with the device. None: the
            :func:`checked` context or ``BKBENCH_CHECK`` decides (default off).
        registry: the registry to look ``impl`` up in (default: the discovered one; eager mode only).
        **options: passed to the implementation (e.g. ``window=8`` for ``lut_green``); an option the
            implementation does not take is a ``ValueError``.

    Returns:
        G of shape ``a.shape``: complex64 for float32/bf16/fp16 work, complex128 when any tensor input is float64
        or complex128 (Python numbers never change the precision); on the device of ``a``. Differentiable w.r.t.
        ``a`` and a tensor ``z`` when the implementation is (``Implementation.differentiable``).

    Raises:
        ValueError: bad shapes, dtypes, devices, unknown ``impl`` or option; with checks on, NaN/Inf inputs or a
            non-finite result.
    """
    if torch.compiler.is_compiling():
        return _traced(a, b, c, z, impl, check, registry, options)
    return eager_call(a, b, c, z, impl, check, registry, options)


def _traced(a: Any, b: Any, c: Any, z: Any, impl: str, check: bool | None, registry: Registry | None,
            options: dict[str, Any]) -> torch.Tensor:
    """What :func:`bk_core` is while ``torch.compile`` traces it: the checks, then one ``bkbench::bk_core``."""
    # imported here, not at the top: the operator module imports torch.library and the kernels' launch code,
    # which ``import bkbench`` must not (a program may still choose TRITON_INTERPRET before triton is imported)
    from bkbench.op import traced_call

    args = call_args(a, b, c, z)
    needs_grad = False
    if torch.is_grad_enabled():
        reject_coupling_grad(b, c)
        needs_grad = a.requires_grad or (isinstance(z, torch.Tensor) and z.requires_grad)
    if check:
        raise ValueError("check: value checks synchronise and cannot run inside torch.compile; use "
                         "bkbench.bk_core_ex for a per-chain status, or check outside the compiled region")
    if registry is not None:
        raise ValueError("registry: a custom registry is not supported under torch.compile; use the default")
    return traced_call(a, b, c, z, impl, options, needs_grad, args)


def bk_core_ex(
    a: torch.Tensor,
    b: torch.Tensor | float,
    c: torch.Tensor | float,
    z: complex | torch.Tensor = 1j,
    *,
    impl: str = "auto",
    registry: Registry | None = None,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`bk_core` without the value checks, returning ``(G, info)``: ``info`` is int32 of shape
    ``a.shape[:-1]``, per chain 0 (ok), 1 (a NaN/Inf in a, b, c or z) or 2 (G has a NaN/Inf: T - zI singular or
    the couplings' product overflows). No host synchronisation: read ``info`` when convenient."""
    g = bk_core(a, b, c, z, impl=impl, check=False, registry=registry, **options)
    args = call_args(a, b, c, z)
    return g, status(args, g).reshape(args.lead)
