"""Input forms of the baselines: what tensors a kernel takes, how to build them for a Case, and the reference.

Baselines do not follow the BK-core convention ``fn(a, k, z)``. Every baseline implementation belongs to one
*form* and is called as

    out = fn(**inputs, **options)

where ``inputs = FORMS[form].build(case)`` (plus what the implementation's ``setup`` adds, e.g. a
FlexAttention block mask) and ``options`` are the registry defaults. ``out`` has the form's output shape.

Forms (shapes; H = d / head_dim heads):

- ``selective_scan`` (Mamba-1; the argument names of ``mamba_ssm.selective_scan_fn``): u, delta, z (B, d, N);
  A (d, n); B, C (B, n, N); D, delta_bias (d,); delta_softplus=True  ->  (B, d, N).
- ``ssd`` (Mamba-2, one B/C group per head): x (B, N, H, P); dt (B, N, H) > 0; A (H,) < 0;
  B, C (B, N, H, n)  ->  (B, N, H, P).
- ``gla``: q, k (B, N, H, K); v (B, N, H, V); g (B, N, H, K) log-gates <= 0  ->  (B, N, H, V).
- ``attention``: q, k, v (B, H, N, Dh); causal: bool; block_keep / block_size (None for dense kernels,
  filled by the FlexAttention setup)  ->  (B, H, N, Dh).
- ``delta_rule`` (DeltaNet): q, k (B, N, H, K) with unit L2 norm per head; v (B, N, H, V); beta (B, N, H) in
  (0, 1)  ->  (B, N, H, V).
- ``gated_delta_rule`` (Gated DeltaNet): as ``delta_rule`` plus g (B, N, H) log forget gates <= 0.
- ``kda`` (Kimi Delta Attention): as ``delta_rule`` plus g (B, N, H, K) log forget gates <= 0 per key channel.
- ``rwkv7`` (RWKV-7 time mixing): r, k (B, N, H, K); v (B, N, H, V); w (B, N, H, K) log decays in
  (-exp(-0.5), 0); kappa (B, N, H, K) unit-norm removal keys; a (B, N, H, K) in-context learning rates in
  (0, 1)  ->  (B, N, H, V).

H = d / head_dim heads of P = K = V = Dh = head_dim (64). Activations take the case dtype; parameters and
gates (including the delta rule's beta and RWKV-7's w and a) stay float32, as in the Mamba and fla kernels
(float64 in a float64 case).

An implementation declares its form with ``bkbench.baseline_meta.baseline`` (next to ``bkbench.register``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bkbench.baseline_meta import FORM_NAMES, meta_of
from bkbench.harness.baselines import references
from bkbench.harness.baselines.case import Case


@dataclass(frozen=True)
class Form:
    """One input form.

    Attributes:
        name: form name.
        build: ``(case) -> inputs`` (tensors on ``case.device``; grad-requiring leaves in fwd+bwd mode).
        reference: ``(**inputs) -> float64 output``.
        grad_inputs: names of the inputs that require grad in fwd+bwd mode.
        default_state: state size n used when ``case.state`` is None (0 = not applicable).
        out_like: the input whose shape and dtype the output has.
    """

    name: str
    build: Callable[[Case], dict[str, Any]]
    reference: Callable[..., torch.Tensor]
    grad_inputs: tuple[str, ...]
    default_state: int
    out_like: str


# -- builders -----------------------------------------------------------------------------------------
def _gen(case: Case) -> torch.Generator:
    return torch.Generator(device=case.device).manual_seed(case.seed)


def _randn(case: Case, gen: torch.Generator, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, device=case.device, dtype=torch.float32).to(dtype or case.dtype)


def _rand(case: Case, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, device=case.device, dtype=torch.float32)


def _log_uniform(case: Case, gen: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * _rand(case, gen, *shape))


def param_dtype(case: Case) -> torch.dtype:
    """Dtype of parameters and gates: float32, or float64 for a float64 case (so fp64 gradients stay fp64)."""
    return torch.float64 if case.dtype == torch.float64 else torch.float32


def _finish(case: Case, inputs: dict[str, Any], grad_inputs: tuple[str, ...]) -> dict[str, Any]:
    if case.requires_grad:
        for name in grad_inputs:
            inputs[name] = inputs[name].detach().requires_grad_(True)
    return inputs


SELECTIVE_SCAN_GRADS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def build_selective_scan(case: Case) -> dict[str, Any]:
    """Mamba-1 inputs: S4D-real A = -(1..n), dt = softplus(delta + delta_bias) with dt_bias set for dt in
    [1e-3, 1e-1] (Mamba's init), unit-variance u, B, C, z; D = 1."""
    g = _gen(case)
    b, d, n_len = case.B, case.d, case.N
    n = case.state or FORMS["selective_scan"].default_state
    pdt = param_dtype(case)
    dt0 = _log_uniform(case, g, 1e-3, 1e-1, d).to(pdt)
    inputs = {
        "u": _randn(case, g, b, d, n_len),
        "delta": _randn(case, g, b, d, n_len) * 0.5,
        "A": -torch.arange(1, n + 1, device=case.device, dtype=pdt).repeat(d, 1),
        "B": _randn(case, g, b, n, n_len),
        "C": _randn(case, g, b, n, n_len),
        "D": torch.ones(d, device=case.device, dtype=pdt),
        "z": _randn(case, g, b, d, n_len),
        "delta_bias": dt0 + torch.log(-torch.expm1(-dt0)),  # inverse softplus
        "delta_softplus": True,
    }
    return _finish(case, inputs, SELECTIVE_SCAN_GRADS)


def build_ssd(case: Case) -> dict[str, Any]:
    """Mamba-2 SSD inputs with one B/C group per head: dt log-uniform in [1e-3, 1e-1], A in -[1, 16]."""
    g = _gen(case)
    b, n_len, h, p = case.B, case.N, case.heads, case.head_dim
    n = case.state or FORMS["ssd"].default_state
    inputs = {
        "x": _randn(case, g, b, n_len, h, p),
        "dt": _log_uniform(case, g, 1e-3, 1e-1, b, n_len, h).to(param_dtype(case)),
        "A": -(1.0 + 15.0 * _rand(case, g, h)).to(param_dtype(case)),
        "B": _randn(case, g, b, n_len, h, n),
        "C": _randn(case, g, b, n_len, h, n),
    }
    return _finish(case, inputs, ("x", "dt", "A", "B", "C"))


def build_gla(case: Case) -> dict[str, Any]:
    """GLA inputs: unit-variance q, k, v; log-gates g = logsigmoid(randn) / 16 (GLA's gate normaliser)."""
    g = _gen(case)
    b, n_len, h = case.B, case.N, case.heads
    kd = case.state or case.head_dim
    inputs = {
        "q": _randn(case, g, b, n_len, h, kd),
        "k": _randn(case, g, b, n_len, h, kd),
        "v": _randn(case, g, b, n_len, h, case.head_dim),
        "g": F.logsigmoid(_randn(case, g, b, n_len, h, kd, dtype=param_dtype(case))) / 16,
    }
    return _finish(case, inputs, ("q", "k", "v", "g"))


def build_attention(case: Case) -> dict[str, Any]:
    """Attention inputs: unit-variance q, k, v of (B, d/64, N, 64) and the causal flag; dense (no blocks)."""
    g = _gen(case)
    shape = (case.B, case.heads, case.N, case.head_dim)
    inputs = {
        "q": _randn(case, g, *shape),
        "k": _randn(case, g, *shape),
        "v": _randn(case, g, *shape),
        "causal": case.causal,
        "block_keep": None,
        "block_size": None,
    }
    return _finish(case, inputs, ("q", "k", "v"))


def _unit(case: Case, gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Random unit vectors along the last axis (normalised in float32, then cast to the case dtype)."""
    return F.normalize(_randn(case, gen, *shape, dtype=torch.float32), dim=-1).to(case.dtype)


def _mamba2_log_decay(case: Case, gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Log forget gates g = -dt * A with Mamba-2's initialisation (dt log-uniform in [1e-3, 1e-1], A in [1, 16]
    per head), which Gated DeltaNet and KDA inherit. ``shape`` is (B, N, H) or (B, N, H, K)."""
    a = 1.0 + 15.0 * _rand(case, gen, shape[2])
    a = a if len(shape) == 3 else a[:, None]
    return (-_log_uniform(case, gen, 1e-3, 1e-1, *shape) * a).to(param_dtype(case))


def _delta_inputs(case: Case, gen: torch.Generator) -> dict[str, Any]:
    b, n_len, h = case.B, case.N, case.heads
    kd = case.state or case.head_dim
    return {
        "q": _unit(case, gen, b, n_len, h, kd),
        "k": _unit(case, gen, b, n_len, h, kd),
        "v": _randn(case, gen, b, n_len, h, case.head_dim),
        "beta": torch.sigmoid(_randn(case, gen, b, n_len, h, dtype=param_dtype(case))),
    }


def build_delta_rule(case: Case) -> dict[str, Any]:
    """DeltaNet inputs: unit-norm q, k (DeltaNet L2-normalises both), unit-variance v, beta = sigmoid(randn)."""
    return _finish(case, _delta_inputs(case, _gen(case)), ("q", "k", "v", "beta"))


def build_gated_delta_rule(case: Case) -> dict[str, Any]:
    """Gated DeltaNet inputs: the DeltaNet inputs plus one log forget gate per (token, head), Mamba-2's init."""
    g = _gen(case)
    inputs = _delta_inputs(case, g)
    inputs["g"] = _mamba2_log_decay(case, g, case.B, case.N, case.heads)
    return _finish(case, inputs, ("q", "k", "v", "g", "beta"))


def build_kda(case: Case) -> dict[str, Any]:
    """KDA inputs: the DeltaNet inputs plus one log forget gate per (token, head, key channel)."""
    g = _gen(case)
    inputs = _delta_inputs(case, g)
    inputs["g"] = _mamba2_log_decay(case, g, case.B, case.N, case.heads, case.state or case.head_dim)
    return _finish(case, inputs, ("q", "k", "v", "g", "beta"))


RWKV7_MAX_LOG_DECAY = math.exp(-0.5)
"""RWKV-7's decay is w = exp(-exp(-0.5) * sigmoid(.)): its log lies in (-exp(-0.5), 0)."""


def build_rwkv7(case: Case) -> dict[str, Any]:
    """RWKV-7 inputs: unit-variance r, k, v; w = -exp(-0.5) sigmoid(randn) (RWKV-7's decay range); unit-norm
    removal keys kappa; in-context learning rates a = sigmoid(randn). w and a are float32 gates."""
    g = _gen(case)
    b, n_len, h = case.B, case.N, case.heads
    kd = case.state or case.head_dim
    pdt = param_dtype(case)
    inputs = {
        "r": _randn(case, g, b, n_len, h, kd),
        "w": -RWKV7_MAX_LOG_DECAY * torch.sigmoid(_randn(case, g, b, n_len, h, kd, dtype=pdt)),
        "k": _randn(case, g, b, n_len, h, kd),
        "v": _randn(case, g, b, n_len, h, case.head_dim),
        "kappa": _unit(case, g, b, n_len, h, kd),
        "a": torch.sigmoid(_randn(case, g, b, n_len, h, kd, dtype=pdt)),
    }
    return _finish(case, inputs, ("r", "w", "k", "v", "kappa", "a"))


FORMS: dict[str, Form] = {
    "selective_scan": Form(
        "selective_scan", build_selective_scan, references.selective_scan_reference, SELECTIVE_SCAN_GRADS, 16, "u"
    ),
    "ssd": Form("ssd", build_ssd, references.ssd_reference, ("x", "dt", "A", "B", "C"), 128, "x"),
    "gla": Form("gla", build_gla, references.gla_reference, ("q", "k", "v", "g"), 0, "v"),
    "attention": Form("attention", build_attention, references.attention_reference, ("q", "k", "v"), 0, "q"),
    "delta_rule": Form("delta_rule", build_delta_rule, references.delta_rule_reference, ("q", "k", "v", "beta"),
                       0, "v"),
    "gated_delta_rule": Form("gated_delta_rule", build_gated_delta_rule, references.gated_delta_rule_reference,
                             ("q", "k", "v", "g", "beta"), 0, "v"),
    "kda": Form("kda", build_kda, references.kda_reference, ("q", "k", "v", "g", "beta"), 0, "v"),
    "rwkv7": Form("rwkv7", build_rwkv7, references.rwkv7_reference, ("r", "w", "k", "v", "kappa", "a"), 0, "v"),
}

if set(FORMS) != set(FORM_NAMES):
    raise RuntimeError(f"bkbench.baseline_meta.FORM_NAMES {FORM_NAMES} and FORMS {sorted(FORMS)} differ")

HEAD_FORMS = ("ssd", "gla", "attention", "delta_rule", "gated_delta_rule", "kda", "rwkv7")
"""Forms that split d into d / head_dim heads (d must be a multiple of head_dim)."""


def build_inputs(impl: Any, case: Case, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Inputs of ``impl`` (a registry record) for ``case``: the form's builder, then the impl's setup."""
    meta = meta_of(impl)
    inputs = FORMS[meta.form].build(case)
    if meta.setup is not None:
        opts = {**getattr(impl, "defaults", {}), **(options or {})}
        inputs = meta.setup(case, inputs, opts)
    return inputs


def reference_output(impl: Any, inputs: dict[str, Any], detach: bool = True) -> torch.Tensor:
    """The float64 reference output for ``inputs`` of ``impl``'s form (setup-added entries included).

    ``detach=False`` keeps the graph (the inputs' autograd history), for gradient references.
    """
    ref = FORMS[meta_of(impl).form].reference
    params = inspect.signature(ref).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    ref_inputs = {
        k: (v.detach() if detach and isinstance(v, torch.Tensor) else v)
        for k, v in inputs.items()
        if takes_all or k in params
    }
    return ref(**ref_inputs)
