"""The BK-core call a user makes, as the suite runner times it, and the bare kernel under it as a second metric.

For a BK-core suite case the headline time (``time_median_s``, ``gbps``, ``roofline_pct`` ...) is the public
call ``bkbench.bk_core(a, b, c, z, impl=name, **options)`` on the inputs as a user holds them:
``make_inputs(problem)`` of the case — ``a`` (B, d, N) in the case dtype, ``b``, ``c`` (B, d, N-1) separate
tensors (or Python numbers for a scalar coupling), ``z`` a Python number (a (B, d) tensor for per-chain
shifts) — with bk_core's value checks off (:func:`bkbench.harness.benchcase.no_check_kwargs`). Validation,
normalisation, the coupling product and casts run inside the timed call, as in a model.

The bare kernel — the registered function ``rec.fn(a, k, z)`` on inputs normalised once, outside the timing
(``docs/architecture.md``) — is timed second, the same way (same mode, budget and CI rule, its own warm-up),
and stored as ``kernel_*`` metrics (``kernel_time_median_s``, ``kernel_roofline_pct`` ...; they land in
``metrics_json``). Each is counted with its own ideal bytes: the call reads a, b, c (and z when it is a tensor)
at their own dtypes and writes G (fp32, separate b and c: 20 B per element; scalar couplings: 12 B); the kernel
reads a, k, z and writes G (16 B per element).

Modes: ``fwd`` calls under ``torch.no_grad()``; ``fwd+bwd`` calls on a leaf ``a`` with ``a.grad`` reset before
each call and ``G.backward(grad_out)`` through bk_core's autograd (the bare kernel keeps
``torch.autograd.grad``, which accumulates nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from bkbench.harness.benchcase import call_ideal_bytes, no_check_kwargs
from bkbench.harness.metrics import WorkModel
from bkbench.harness.problems import Inputs
from bkbench.registry import Implementation, Registry

TIMED_CALL = "bk_core"  # workload info "timed_call" of a row whose headline is the user call
KERNEL_PREFIX = "kernel_"
# metric columns (bkbench.harness.metrics "latency" / "throughput") kept for the bare kernel, under KERNEL_PREFIX
KERNEL_COLUMNS = (
    "time_median_s", "time_p20_s", "time_p80_s", "time_iqr_s", "time_ci95_s", "n_samples", "timing_converged",
    "timing_stop", "host_s_per_call", "host_bound", "ideal_bytes", "gbps", "roofline_pct",
)


@dataclass
class KernelPart:
    """The bare kernel of a BK-core workload: ``fn()`` runs ``rec.fn(a, k, z)`` on prepared inputs (what the
    headline timed before the harness timed the user call); ``model``: its own bytes/FLOP model."""

    fn: Callable[[], Any]
    model: WorkModel


def user_call(rec: Implementation, inputs: Inputs, mode: str, options: dict[str, Any],
              registry: Registry | None = None, grad_out: torch.Tensor | None = None) -> Callable[[], Any]:
    """The zero-argument user call ``bk_core(a, b, c, z, impl=rec.name, **options)`` on ``inputs``.

    fwd: returns G (a.shape, complex). fwd+bwd: ``a`` becomes a leaf (a detached copy of ``inputs.a``), each call
    resets ``a.grad``, runs the forward and ``G.backward(grad_out)`` (``grad_out``: a.shape, G's dtype) and
    returns (G, a.grad)."""
    import bkbench

    bk_core = bkbench.bk_core
    kw: dict[str, Any] = {**no_check_kwargs(bk_core), **options}
    if registry is not None:
        kw["registry"] = registry
    name = rec.name
    b, c, z = inputs.b, inputs.c, inputs.z
    if mode == "fwd":
        a = inputs.a

        def fn() -> Any:
            with torch.no_grad():
                return bk_core(a, b, c, z, impl=name, **kw)

        return fn
    if grad_out is None:
        raise ValueError("grad_out: mode fwd+bwd needs the cotangent of G")
    leaf = inputs.a.detach().clone().requires_grad_(True)
    gout = grad_out.reshape(leaf.shape)

    def fn_bwd() -> Any:
        leaf.grad = None
        g = bk_core(leaf, b, c, z, impl=name, **kw)
        g.backward(gout)
        return g, leaf.grad

    return fn_bwd


def call_model(inputs: Inputs, out_dtype: torch.dtype, chains: int, n: int, batch: int, mode: str,
               flops_per_element: int) -> WorkModel:
    """Work model of the user call: ideal bytes from :func:`bkbench.harness.benchcase.call_ideal_bytes` (fwd); fwd+bwd
    adds a backward that re-reads a, b, c, z and grad_G and writes grad_a (at a's dtype)."""
    fwd = call_ideal_bytes(inputs, out_dtype)
    a_b = inputs.a.numel() * inputs.a.element_size()
    g_b = chains * n * torch.empty((), dtype=out_dtype).element_size()
    bwd = fwd + a_b  # re-read a, b, c, z; read grad_G (G's size); write grad_a
    ideal = fwd if mode == "fwd" else fwd + bwd
    peak = fwd + g_b if mode == "fwd" else fwd + g_b + a_b + g_b  # + stored pivots; + grad_out, grad_a
    flops = flops_per_element * chains * n * (1 if mode == "fwd" else 2)
    note = ("user call bk_core(a, b, c, z): a, b, c (z if a tensor) read at their dtypes, G written; fwd+bwd adds "
            "a, b, c, z, grad_G read and grad_a written")
    return WorkModel(ideal_bytes=float(ideal), flops=float(flops), elements=chains * n, tokens=batch * n,
                     peak_bytes=float(peak), note=note)


def kernel_metrics(wl: Any, cfg: Any, device: str, copy_bandwidth_gbs: float | None) -> dict[str, Any]:
    """Time the bare kernel of workload ``wl`` (``wl.kernel``) with timing config ``cfg`` (the headline's mode,
    budget and CI rule; warm-up by time, since ``cfg``'s per-call hint belongs to the user call) and return its
    metrics as ``kernel_*`` columns. ``{}`` when ``wl`` has no bare kernel (baselines); a failure is recorded as
    ``kernel_error`` and never costs the headline row."""
    part = getattr(wl, "kernel", None)
    if part is None:
        return {}
    from bkbench.harness import metrics
    from bkbench.harness.timing import measure

    kcfg = replace(cfg, per_call_hint_s=None, min_warmup_calls=1)
    try:
        timing = measure(part.fn, kcfg, device)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {KERNEL_PREFIX + "error": f"{type(exc).__name__}: {text[:300]}"}
    ctx = metrics.MetricContext(timing=timing, model=part.model, copy_bandwidth_gbs=copy_bandwidth_gbs)
    cols = metrics.compute(ctx, ["latency", "throughput"])
    return {KERNEL_PREFIX + k: cols[k] for k in KERNEL_COLUMNS if k in cols}
