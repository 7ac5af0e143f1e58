"""Turn (baseline, case) into a zero-argument callable for a timer, plus its analytic model.

This is the interface the suite runner uses (docs/baselines.md, "Runner interface")::

    from bkbench.harness.baselines import Case, prepare, prepare_layer, Declined
    case = Case(B=8, N=4096, d=1024, dtype="bf16", device="cuda", mode="fwd+bwd")
    try:
        p = prepare("attention_sdpa_flash", case)      # kernel-level baseline (registry name)
    except Declined as why:
        ...                                            # record "skip" with str(why)
    p.fn()                                             # one forward (or forward + backward); time this
    p.model.flops_for(case.mode), p.model.bytes_min, p.model.peak_for(case.mode)
    layer = prepare_layer("mamba2", case)              # layer-level: "bk", "mamba2", "attention"

Everything except the call itself (input generation, block masks, layout changes, the output gradient)
happens in ``prepare``. In fwd+bwd mode each call clears the ``.grad`` of every leaf before the forward,
so nothing accumulates between timed calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bkbench.baseline_meta import meta_of
from bkbench.harness.baselines.case import DTYPE_NAMES, Case
from bkbench.harness.baselines.forms import FORMS, HEAD_FORMS, build_inputs
from bkbench.harness.baselines.layers import build_layer, layer_model
from bkbench.harness.baselines.models import Model, model_for
from bkbench.kernels.attention._block_sparsity import achieved_sparsity
from bkbench.registry import Implementation, Registry, default_registry

BASELINE_KINDS = ("ssm", "attention")


class Declined(ValueError):
    """The baseline does not take this case here; ``str(exc)`` is the reason (report it as a skip)."""


@dataclass
class Prepared:
    """A ready-to-time call.

    fn: zero-argument callable running one forward (mode "fwd", under ``torch.no_grad``) or one forward plus
        backward (mode "fwd+bwd"); returns the forward output.
    model: the analytic model (:class:`~bkbench.harness.baselines.models.Model`).
    inputs: the tensors the call uses (for the kernel-level baselines, the keyword inputs of the form).
    info: form, memory variant, options, achieved sparsity (block-sparse attention), parameters (layers).
    """

    name: str
    case: Case
    fn: Callable[[], Any]
    model: Model
    inputs: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def resolve(impl: str | Implementation, registry: Registry | None = None) -> Implementation:
    """Registry record of a baseline (kind "ssm" or "attention")."""
    rec = (registry or default_registry()).get(impl) if isinstance(impl, str) else impl
    if rec.kind not in BASELINE_KINDS:
        raise ValueError(f"impl: {rec.name!r} is of kind {rec.kind!r}; baselines are of kind 'ssm' or 'attention'")
    meta_of(rec)
    return rec


def decline_reason(rec: Implementation, case: Case) -> str | None:
    """Why ``rec`` cannot run ``case`` here (device, availability, dtype, gradient, shape, its own rule)."""
    reason = rec.decline_reason(case)
    if reason:
        return reason
    if case.dtype not in rec.dtypes:
        return f"no {DTYPE_NAMES[case.dtype]} support"
    if case.mode == "fwd+bwd" and not rec.differentiable:
        return "not differentiable"
    if meta_of(rec).form in HEAD_FORMS:
        try:
            _ = case.heads
        except ValueError as exc:
            return str(exc)
    return None


def _grad_leaves(form: str, inputs: dict[str, Any]) -> list[torch.Tensor]:
    return [inputs[n] for n in FORMS[form].grad_inputs if isinstance(inputs.get(n), torch.Tensor)]


def _grad_output(like: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=like.device).manual_seed(seed + 7919)
    return torch.randn(like.shape, generator=gen, device=like.device, dtype=torch.float32).to(like.dtype)


def prepare(
    impl: str | Implementation, case: Case, registry: Registry | None = None, **options: Any
) -> Prepared:
    """Build the inputs of baseline ``impl`` for ``case`` and return the callable to time.

    Raises :class:`Declined` (a ValueError) with the reason when the baseline does not take the case here.
    ``options`` override the registry defaults (e.g. ``chunk=128``, ``tile=64``).
    """
    rec = resolve(impl, registry)
    reason = decline_reason(rec, case)
    if reason:
        raise Declined(f"{rec.name}: {reason}")
    meta = meta_of(rec)
    opts = {**rec.defaults, **options}
    inputs = build_inputs(rec, case, opts)
    call_opts = {k: v for k, v in opts.items() if k not in inputs}
    info: dict[str, Any] = {"form": meta.form, "variant": meta.variant, "options": opts}
    if inputs.get("block_keep") is not None:
        info["sparsity_achieved"] = achieved_sparsity(inputs["block_keep"].cpu(), case.causal)
        info["tile"] = inputs["block_size"]
    model_case = case.with_(sparsity=info.get("sparsity_achieved", case.sparsity))
    model = model_for(meta.form, model_case, meta.variant, **opts)

    def forward() -> Any:
        return rec.fn(**inputs, **call_opts)

    if case.mode == "fwd":

        def fn() -> Any:
            with torch.no_grad():
                return forward()

    else:
        leaves = _grad_leaves(meta.form, inputs)
        grad_out = _grad_output(inputs[FORMS[meta.form].out_like], case.seed)

        def fn() -> Any:
            for t in leaves:
                t.grad = None
            out = forward()
            out.backward(grad_out)
            return out

    return Prepared(rec.name, case, fn, model, inputs, info)


def prepare_layer(name: str, case: Case, **options: Any) -> Prepared:
    """The layer ``name`` ("bk", "mamba2", "attention", "gated_deltanet") at ``case`` as a callable on x (B, N, d).

    ``options`` go to the layer constructor (BK: ``h``, ``impl``, ``z``; Mamba-2: ``d_state``, ``headdim``,
    ``expand``, ``d_conv``, ``ssd``; attention: ``backend``; Gated DeltaNet: ``expand_v``, ``d_conv``, ``core``).
    ``info["core"]`` names the Gated DeltaNet core used (fla or the PyTorch form, with the reason).
    """
    layer = build_layer(name, case, **options)
    gen = torch.Generator(device=case.device).manual_seed(case.seed)
    x = torch.randn(case.B, case.N, case.d, generator=gen, device=case.device, dtype=torch.float32).to(case.dtype)
    model = layer_model(name, case, layer)
    info: dict[str, Any] = {
        "layer": name,
        "options": options,
        "parameters": sum(p.numel() for p in layer.parameters()),
    }
    if hasattr(layer, "core_name"):
        info["core"] = layer.core_name
    if case.mode == "fwd":

        def fn() -> Any:
            with torch.no_grad():
                return layer(x)

    else:
        x.requires_grad_(True)
        grad_out = _grad_output(x, case.seed)

        def fn() -> Any:
            layer.zero_grad(set_to_none=True)
            x.grad = None
            out = layer(x)
            out.backward(grad_out)
            return out

    return Prepared(f"layer_{name}", case, fn, model, {"x": x, "layer": layer}, info)
