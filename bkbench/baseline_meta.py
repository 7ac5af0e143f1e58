"""What a baseline kernel declares beside its registry record: its input form (the :func:`baseline` decorator).

Library layer: the SSM and attention kernels in ``kernels/`` import this; the harness's input forms, references
and checks (``bkbench/harness/baselines/``) read it. The forms themselves (how inputs are built, the float64 references)
live in ``bkbench/harness/baselines/forms.py``, whose ``FORMS`` has exactly the names of :data:`FORM_NAMES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

META_ATTR = "__bkbench_baseline__"
VARIANTS = ("fused", "materialized", "sequential")
FORM_NAMES = ("selective_scan", "ssd", "gla", "attention", "delta_rule", "gated_delta_rule", "kda", "rwkv7")

Setup = Callable[[Any, dict[str, Any], dict[str, Any]], dict[str, Any]]
"""``setup(case, inputs, options) -> inputs``: run once, untimed, before the kernel."""


@dataclass(frozen=True)
class BaselineMeta:
    """What the harness needs to know about a baseline besides its registry record.

    form: one of :data:`FORM_NAMES`. variant: which analytic memory model applies ("fused" kernels keep
    per-step state on chip; "materialized" ones write (.., N, n) states or N x N scores to memory; "sequential"
    loops over N in Python keeping one state; see ``bkbench/harness/baselines/models.py``).
    setup: optional ``(case, inputs, options) -> inputs`` run once, untimed, before the kernel (block masks,
    layout changes the library requires).
    tolerances: per-dtype overrides of the check battery's tolerance (e.g. TF32 tensor-core products in a
    float32 kernel), with ``tolerance_note`` saying why; the override is shown in every check result.
    heavy_compile: every new shape costs a compile or an autotune sweep on CUDA (FlexAttention under
    torch.compile, fla's autotuned Triton kernels): the CUDA battery uses fewer shapes for it.
    """

    form: str
    variant: str = "fused"
    setup: Setup | None = field(default=None)
    tolerances: dict[torch.dtype, float] = field(default_factory=dict)
    tolerance_note: str = ""
    heavy_compile: bool = False


def baseline(
    form: str,
    *,
    variant: str = "fused",
    setup: Setup | None = None,
    tolerances: dict[torch.dtype, float] | None = None,
    tolerance_note: str = "",
    heavy_compile: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach a :class:`BaselineMeta` to a baseline function (use with ``@bkbench.register``)."""
    if tolerances and not tolerance_note:
        raise ValueError("tolerance_note: say why the tolerances are overridden")
    if form not in FORM_NAMES:
        raise ValueError(f"form: {form!r} is not one of {sorted(FORM_NAMES)}")
    if variant not in VARIANTS:
        raise ValueError(f"variant: {variant!r} must be one of {VARIANTS}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        meta = BaselineMeta(form, variant, setup, dict(tolerances or {}), tolerance_note, heavy_compile)
        setattr(fn, META_ATTR, meta)
        return fn

    return decorate


def meta_of(impl: Any) -> BaselineMeta:
    """The BaselineMeta of a registry record (or a decorated function); ValueError when it has none."""
    fn = getattr(impl, "fn", impl)
    meta = getattr(fn, META_ATTR, None)
    if meta is None:
        name = getattr(impl, "name", getattr(fn, "__name__", repr(fn)))
        raise ValueError(f"impl: {name!r} is not a baseline (no @baseline(form=...) on its function)")
    return meta
