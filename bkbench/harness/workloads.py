"""Turn a suite case into something to time: a prepared zero-argument callable, its analytic model, and a
correctness check that runs before any timing.

``prepare(spec, registry) -> Workload`` (raises :class:`Skip` with the reason when the implementation declines).

Kind ``"bk"`` (BK-core implementations)
    Inputs come from :class:`bkbench.harness.problems.Problem` (batch = (B, d): B*d chains of length N). The timed
    callable (the headline) is the **user call** ``bkbench.bk_core(a, b, c, z, impl=name, **options)`` on those
    inputs as a user holds them (:mod:`bkbench.harness.usercall`); ``Workload.kernel`` is the **bare kernel**, the
    registered function ``rec.fn(a, k, z, **options)`` on inputs brought to the kernel calling convention by
    :func:`bkbench.validate.normalize` once, outside the timed region (half-precision ``a`` upcast to float32
    unless the implementation lists it, exactly as :func:`bkbench.bk_core` does), timed second as the
    ``kernel_*`` metrics. Mode ``fwd`` runs both under ``torch.no_grad``; mode ``fwd+bwd`` runs the user call
    on a leaf ``a`` (``.grad`` reset, ``G.backward(grad_out)``) and the bare kernel's forward on a leaf ``a``
    with ``torch.autograd.grad(G, a, grad_out)`` (no ``.grad`` accumulation is timed).
    Check (on the same seeded inputs the timed calls read): for the bare kernel and for the user call, the
    full output must be finite and of the right shape/dtype; a spread subset of up to ``CHECK_CHAINS`` chains
    is compared with the float64 reference (dense inverse for N <= 256, pivot form beyond), on the timed seed
    and on every ``check_seeds`` seed (fresh inputs of the same shape, up to ``EXTRA_SEED_MAX_ELEMENTS``
    elements); fwd+bwd also compares the gradient w.r.t. ``a`` with a float64 reference (dense autograd for
    N <= 256, the exact O(N) F/R recurrences in numpy beyond).

Kinds ``"ssm"`` / ``"attention"`` (baselines)
    Delegated to :func:`bkbench.harness.baselines.prepare` (its ``Prepared.fn`` clears ``.grad`` itself in fwd+bwd
    mode). Check: the timed call's full output (and, in fwd+bwd, every input gradient) must be finite; its
    first ``CHECK_TOKENS`` tokens of batch 0 are compared with the form's float64 reference run on the same
    inputs truncated to those tokens — exact for causal models, whose prefix does not depend on later tokens.

Ideal-bytes convention: fwd = every input read once + every output written once; fwd+bwd adds a backward
that re-reads the inputs, reads grad_out and writes the input gradients. A BK row counts its user call's
arguments (a, b, c: 20 B per fp32 element); its ``kernel_*`` metrics count the kernel's (a, k: 16 B).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bkbench.harness.accuracy import exact_tolerance, grad_tolerance, relative_error
from bkbench.harness.metrics import CheckResult, WorkModel
from bkbench.harness.problems import Inputs, Problem, draw, make_inputs
from bkbench.harness.reference import DENSE_MAX_N, dense_grad_reference, pivot_grad_reference, reference
from bkbench.harness.usercall import TIMED_CALL, KernelPart, call_model, user_call
from bkbench.registry import Implementation, Registry, is_uniform
from bkbench.validate import HALF_DTYPES, normalize

CHECK_CHAINS = 32
CHECK_TOKENS = 256
EXTRA_SEED_MAX_ELEMENTS = 1 << 24  # check_seeds beyond the timed seed only up to this many elements
BK_FLOPS_PER_ELEMENT = 28  # same convention as bkbench.harness.baselines.models.BK_FLOPS_PER_ELEMENT


class Skip(Exception):
    """The implementation does not take this case here; ``str(exc)`` is the reason (stored as ``skipped``)."""


@dataclass
class Workload:
    """fn: the zero-argument callable to time (BK-core: the user call). model: its analytic model. check: runs
    the correctness check (calls the implementation; untimed). info: what was prepared (stored in
    metrics_json). kernel: BK-core only, the bare kernel timed as the second metric (``kernel_*`` columns)."""

    fn: Callable[[], Any]
    model: WorkModel
    check: Callable[[], CheckResult]
    device: str
    info: dict[str, Any] = field(default_factory=dict)
    kernel: KernelPart | None = None


def _elt(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# -- references (cached per worker: the same problem recurs across implementations) --------------------------
_REF_CACHE: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
_REF_CACHE_SIZE = 16


def _cached(key: tuple[Any, ...], make: Callable[[], torch.Tensor]) -> torch.Tensor:
    if key in _REF_CACHE:
        _REF_CACHE.move_to_end(key)
        return _REF_CACHE[key]
    val = make()
    _REF_CACHE[key] = val
    while len(_REF_CACHE) > _REF_CACHE_SIZE:
        _REF_CACHE.popitem(last=False)
    return val


def check_subset(chains: int, count: int = CHECK_CHAINS) -> torch.Tensor:
    """Indices of up to ``count`` chains spread evenly over [0, chains) (first and last included)."""
    if chains <= count:
        return torch.arange(chains)
    return torch.unique(torch.linspace(0, chains - 1, count).round().long())


def subset_inputs(inp: Inputs, idx: torch.Tensor) -> Inputs:
    """The chains ``idx`` of ``inp`` (leading dims flattened), on the CPU (indexed on the device first)."""
    n = inp.a.shape[-1]
    chains = inp.a.numel() // n

    def rows(x: torch.Tensor, width: int) -> torch.Tensor:
        return x.detach().reshape(chains, width)[idx.to(x.device)].to("cpu")

    def off(x: torch.Tensor | float) -> torch.Tensor | float:
        return rows(x, n - 1) if isinstance(x, torch.Tensor) and x.dim() > 0 else x

    z = inp.z
    if isinstance(z, torch.Tensor) and z.dim() > 0:
        z = z.detach().reshape(chains)[idx.to(z.device)].to("cpu")
    return Inputs(rows(inp.a, n), off(inp.b), off(inp.c), z)


# Inputs of the last problems (the runner orders cases problem-major, so consecutive implementations share
# them). Implementations must not modify their inputs (docs/architecture.md).
_INPUT_CACHE: OrderedDict[tuple[str, str], tuple[Inputs, Any]] = OrderedDict()
_INPUT_CACHE_SIZE = 2


def bk_inputs(p: Problem) -> tuple[Inputs, Any]:
    """(make_inputs(p), normalize(...)) for ``p``, cached for the last few problems."""
    key = (p.key, p.device)
    if key in _INPUT_CACHE:
        _INPUT_CACHE.move_to_end(key)
        return _INPUT_CACHE[key]
    if p.elements > 1 << 22:  # large problems: keep one at a time
        _INPUT_CACHE.clear()
    inp = make_inputs(p)
    val = (inp, normalize(inp.a, inp.b, inp.c, inp.z))
    _INPUT_CACHE[key] = val
    while len(_INPUT_CACHE) > _INPUT_CACHE_SIZE:
        _INPUT_CACHE.popitem(last=False)
    return val


# -- BK-core -------------------------------------------------------------------------------------------------
def bk_problem(spec: Any, seed: int | None = None) -> Problem:
    """The :class:`Problem` of a BK case: batch (B, d), length N, the suite's extra problem fields."""
    extra = dict(spec.problem or {})
    if "z" in extra and isinstance(extra["z"], (list, tuple)):
        extra["z"] = complex(*extra["z"])
    return Problem(batch=(spec.batch, spec.d), n=spec.n, dtype=spec.dtype, device=spec.device,
                   sparsity=spec.sparsity, seed=spec.seed if seed is None else seed, **extra)


def _work_a(rec: Implementation, a: torch.Tensor) -> torch.Tensor:
    """``a`` in the dtype bk_core would hand to ``rec`` (half types upcast to float32 unless listed)."""
    if a.dtype in rec.dtypes:
        return a
    if a.dtype in HALF_DTYPES:
        a = a.to(torch.float32)
    if a.dtype not in rec.dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in rec.dtypes)
        raise Skip(f"no {str(a.dtype).replace('torch.', '')} support (takes {names})")
    return a


def _grad_out(shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    """The cotangent of G for mode fwd+bwd: complex normal, deterministic in ``seed`` like the inputs."""
    gen = torch.Generator().manual_seed(seed + 1000)
    re = draw("normal", shape, gen, seed + 1000, 1)
    im = draw("normal", shape, gen, seed + 1000, 2)
    part = torch.float32 if dtype == torch.complex64 else torch.float64  # same rounding as casting the complex
    return torch.complex(re.to(part), im.to(part)).to(dtype).to(device)


def _bk_model(rec: Implementation, work_a: torch.Tensor, k: torch.Tensor, out_dtype: torch.dtype, batch: int,
              mode: str) -> WorkModel:
    chains, n = work_a.shape
    a_b = chains * n * _elt(work_a.dtype)
    k_b = 0 if is_uniform(k) else chains * max(n - 1, 0) * _elt(k.dtype)
    z_b = chains * _elt(out_dtype)
    g_b = chains * n * _elt(out_dtype)
    fwd = a_b + k_b + z_b + g_b
    ideal = fwd if mode == "fwd" else fwd + (a_b + k_b + z_b + g_b + a_b)
    flops = BK_FLOPS_PER_ELEMENT * chains * n * (1 if mode == "fwd" else 2)
    peak = fwd + g_b if mode == "fwd" else fwd + g_b + a_b + g_b  # + stored pivots; + grad_out, grad_a
    note = "fwd: a + k + z read, G written; fwd+bwd adds a, k, z, grad_G read and grad_a written"
    return WorkModel(ideal_bytes=float(ideal), flops=float(flops), elements=chains * n, tokens=batch * n,
                     peak_bytes=float(peak), note=note)


def prepare_bk(spec: Any, rec: Implementation, registry: Registry | None = None) -> Workload:
    p = bk_problem(spec)
    reason = rec.decline_reason(p)
    if reason:
        raise Skip(reason)
    if spec.mode == "fwd+bwd" and not rec.differentiable:
        raise Skip("not differentiable")
    opts = {**rec.defaults, **(spec.options or {})}
    inp, norm = bk_inputs(p)
    work_a = _work_a(rec, norm.a)
    k, z = norm.k, norm.z
    fn_impl = rec.fn
    out_dtype = norm.out_dtype
    grad_out = _grad_out(tuple(work_a.shape), out_dtype, p.device, p.seed) if spec.mode == "fwd+bwd" else None

    if spec.mode == "fwd":

        def kernel_fn() -> Any:
            with torch.no_grad():
                return fn_impl(work_a, k, z, **opts)

    else:
        a_leaf = work_a.detach().clone().requires_grad_(True)

        def kernel_fn() -> Any:
            g = fn_impl(a_leaf, k, z, **opts)
            (ga,) = torch.autograd.grad(g, a_leaf, grad_out)
            return g, ga

    fn = user_call(rec, inp, spec.mode, spec.options or {}, registry, grad_out)
    chains, n = work_a.shape
    model = call_model(inp, out_dtype, chains, n, spec.batch, spec.mode, BK_FLOPS_PER_ELEMENT)
    kernel = KernelPart(kernel_fn, _bk_model(rec, work_a, k, out_dtype, spec.batch, spec.mode))

    def check() -> CheckResult:
        return _check_bk(spec, rec, opts, grad_out, registry)

    info = {"timed_call": TIMED_CALL, "work_dtype": str(work_a.dtype).replace("torch.", ""),
            "uniform_k": is_uniform(k), "chains": chains, "options": opts, "problem_key": p.key,
            "kernel_model_note": kernel.model.note}
    return Workload(fn=fn, model=model, check=check, device=p.device, info=info, kernel=kernel)


def _check_bk(spec: Any, rec: Implementation, opts: dict[str, Any], grad_out: torch.Tensor | None = None,
              registry: Registry | None = None) -> CheckResult:
    """Value (and gradient) check of ``rec``'s bare kernel and of the user call ``bk_core(..., impl=rec.name)``
    on the timed seed and every check seed (``grad_out``: the timed cotangent, reused for the timed seed instead
    of being drawn again)."""
    extra = [s for s in (spec.check_seeds or ()) if s != spec.seed]
    if spec.elements > EXTRA_SEED_MAX_ELEMENTS:
        extra = []  # fresh full-size inputs would cost seconds of host time per case
    seeds = [spec.seed, *extra]
    worst: CheckResult | None = None
    for seed in seeds:
        res = _check_bk_seed(spec, rec, opts, seed, grad_out if seed == spec.seed else None, registry)
        if not res.passed:
            return res
        if worst is None or (res.rel_err or 0.0) >= (worst.rel_err or 0.0):
            worst = res
    assert worst is not None
    return CheckResult(True, worst.rel_err, worst.tolerance, worst.detail,
                       f"{worst.scope}; seeds {','.join(str(s) for s in seeds)}")


def _check_bk_seed(spec: Any, rec: Implementation, opts: dict[str, Any], seed: int,
                   grad_out: torch.Tensor | None = None, registry: Registry | None = None) -> CheckResult:
    """One seed: the timed seed on the timed inputs themselves, another seed on fresh inputs of the same
    shape (the same shape, so shape-specialised kernels are not compiled or autotuned again). The bare kernel
    is checked first, then the user call on the same inputs."""
    p = bk_problem(spec, seed)
    if seed != spec.seed:
        inp = make_inputs(p)
        norm = normalize(inp.a, inp.b, inp.c, inp.z)
    else:
        inp, norm = bk_inputs(p)
    work_a = _work_a(rec, norm.a)
    chains, n = work_a.shape
    tol = rec.tolerance(p, opts) or exact_tolerance(p.torch_dtype)
    gout = None
    if spec.mode == "fwd+bwd":
        gout = grad_out if grad_out is not None else _grad_out((chains, n), norm.out_dtype, p.device, seed)
    with torch.no_grad():
        g = rec.fn(work_a, norm.k, norm.z, **opts)

    def kernel_grad() -> torch.Tensor:
        a_leaf = work_a.detach().clone().requires_grad_(True)
        return torch.autograd.grad(rec.fn(a_leaf, norm.k, norm.z, **opts), a_leaf, gout)[0]

    kernel = _compare_bk(p, rec, inp, g, (chains, n), norm.out_dtype, tol, gout, kernel_grad)
    if not kernel.passed:
        return kernel
    out = user_call(rec, inp, spec.mode, spec.options or {}, registry, gout)()
    ug, uga = out if isinstance(out, tuple) else (out, None)
    call = _compare_bk(p, rec, inp, ug, tuple(inp.a.shape), norm.out_dtype, tol, gout, lambda: uga)
    if not call.passed:
        return CheckResult(False, call.rel_err, call.tolerance, f"user call bk_core(impl={rec.name!r}): "
                           f"{call.detail}", f"user call: {call.scope}")
    return CheckResult(True, max(kernel.rel_err or 0.0, call.rel_err or 0.0), kernel.tolerance, kernel.detail,
                       f"{kernel.scope}; the same for the user call bk_core")


def _compare_bk(p: Problem, rec: Implementation, inp: Inputs, g: torch.Tensor, shape: tuple[int, ...],
                out_dtype: torch.dtype, tol: float, gout: torch.Tensor | None,
                grad: Callable[[], torch.Tensor | None]) -> CheckResult:
    """Compare one result with the float64 references of ``inp``: ``g`` must have ``shape`` (B*d chains x N
    once flattened), ``out_dtype`` and ``p``'s device, be finite everywhere and match on the spread subset of
    chains; with ``gout`` (fwd+bwd) the gradient ``grad()`` w.r.t. ``a`` (any shape of B*d x N elements) too."""
    n = p.n
    chains = p.chains
    if tuple(g.shape) != shape or g.dtype != out_dtype or g.device.type != p.device:
        return CheckResult(False, None, tol, f"returned {tuple(g.shape)} {g.dtype} on {g.device}, expected "
                           f"{shape} {out_dtype} on {p.device}")
    g = g.reshape(chains, n)
    bad = int((~torch.isfinite(g)).sum())
    if bad:
        return CheckResult(False, math.inf, tol, f"{bad} non-finite value(s) in G", "all chains")
    idx = check_subset(chains)
    sub = subset_inputs(inp, idx)
    ref = _cached(("value", p.key, tuple(idx.tolist())), lambda: reference(sub))
    err = relative_error(g.detach().to("cpu")[idx], ref.reshape(len(idx), n))
    scope = f"{len(idx)} of {chains} chains vs float64 {'dense' if n <= DENSE_MAX_N else 'pivot'} reference"
    if err.rel_err > tol:
        return CheckResult(False, err.rel_err, tol, f"error {err.rel_err:.2e} > tolerance {tol:.1e} "
                           f"(worst chain {err.rel_err_chain:.2e})", scope)
    if gout is None:
        return CheckResult(True, err.rel_err, tol, "", scope)
    # gradient w.r.t. a
    gtol = grad_tolerance(p.torch_dtype) if rec.exact else max(tol, grad_tolerance(p.torch_dtype))
    ga = grad()
    if ga is None or ga.numel() != chains * n:
        return CheckResult(False, None, gtol, "no gradient w.r.t. a" if ga is None else
                           f"grad_a has shape {tuple(ga.shape)}, expected {chains * n} elements", scope)
    ga = ga.reshape(chains, n)
    bad = int((~torch.isfinite(ga)).sum())
    if bad:
        return CheckResult(False, math.inf, gtol, f"{bad} non-finite value(s) in grad_a", scope)
    gsub = gout.detach().reshape(chains, n).to("cpu")[idx]
    if n <= DENSE_MAX_N:
        gref = _cached(("grad", p.key, tuple(idx.tolist())), lambda: dense_grad_reference(sub, gsub)[0])
        how = "dense autograd"
    elif not sub.a.is_complex():
        gref = _cached(("grad", p.key, tuple(idx.tolist())), lambda: pivot_grad_reference(sub, gsub))
        how = "O(N) recurrences"
    else:
        return CheckResult(True, err.rel_err, tol, "gradient checked for finiteness only (complex a, N > 256)",
                           scope + "; grad finite only")
    gerr = relative_error(ga.detach().to("cpu")[idx], gref.reshape(len(idx), n))
    scope += f"; grad_a vs float64 {how}"
    if gerr.rel_err > gtol:
        return CheckResult(False, gerr.rel_err, gtol, f"gradient error {gerr.rel_err:.2e} > tolerance {gtol:.1e}",
                           scope)
    return CheckResult(True, max(err.rel_err, gerr.rel_err), max(tol, gtol),
                       f"value error {err.rel_err:.2e}, gradient error {gerr.rel_err:.2e}", scope)


# -- baselines (SSM / attention) -------------------------------------------------------------------------------
# Inputs that carry a token axis, per form (name -> axis); the output's token axis.
TOKEN_AXES: dict[str, tuple[dict[str, int], int]] = {
    "selective_scan": ({"u": -1, "delta": -1, "z": -1, "B": -1, "C": -1}, -1),
    "ssd": ({"x": 1, "dt": 1, "B": 1, "C": 1}, 1),
    "gla": ({"q": 1, "k": 1, "v": 1, "g": 1}, 1),
    "attention": ({"q": 2, "k": 2, "v": 2}, 2),
    "delta_rule": ({"q": 1, "k": 1, "v": 1, "beta": 1}, 1),
    "gated_delta_rule": ({"q": 1, "k": 1, "v": 1, "g": 1, "beta": 1}, 1),
    "kda": ({"q": 1, "k": 1, "v": 1, "g": 1, "beta": 1}, 1),
    "rwkv7": ({"r": 1, "w": 1, "k": 1, "v": 1, "kappa": 1, "a": 1}, 1),
}


def _first_out(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


def prepare_baseline(spec: Any, rec: Implementation, registry: Registry) -> Workload:
    from bkbench.harness.baselines import Case, Declined, prepare

    try:
        case = Case(B=spec.batch, N=spec.n, d=spec.d, dtype=spec.dtype, device=spec.device,
                    sparsity=spec.sparsity, mode=spec.mode, seed=spec.seed)
    except ValueError as exc:
        raise Skip(f"case not valid for baselines: {exc}") from None
    try:
        prep = prepare(rec, case, registry, **(spec.options or {}))
    except Declined as exc:
        raise Skip(str(exc)) from None
    m = prep.model
    inputs_b = max(m.peak_fwd_bwd - m.peak_fwd, 0.0)
    outputs_b = max(m.bytes_min - inputs_b, 0.0)
    ideal = m.bytes_min if spec.mode == "fwd" else m.bytes_min + 2 * inputs_b + outputs_b
    model = WorkModel(ideal_bytes=float(ideal), flops=float(m.flops_for(spec.mode)),
                      elements=case.B * case.N * case.d, tokens=case.B * case.N,
                      peak_bytes=float(m.peak_for(spec.mode)), note=m.note or "bkbench.harness.baselines.models")
    info = {k: v for k, v in prep.info.items() if k != "options"}
    info["options"] = prep.info.get("options", {})

    def check() -> CheckResult:
        return _check_baseline(rec, case, prep)

    return Workload(fn=prep.fn, model=model, check=check, device=spec.device, info=info)


def _check_baseline(rec: Implementation, case: Any, prep: Any) -> CheckResult:
    from bkbench.baseline_meta import meta_of
    from bkbench.harness.baselines.check import TOLERANCE
    from bkbench.harness.baselines.forms import reference_output

    meta = meta_of(rec)
    tol = meta.tolerances.get(case.dtype, TOLERANCE[case.dtype])
    out = _first_out(prep.fn())
    out = out.detach()
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        return CheckResult(False, math.inf, tol, f"{bad} non-finite value(s) in the output", "full output")
    if case.mode == "fwd+bwd":
        for name, t in prep.inputs.items():
            if isinstance(t, torch.Tensor) and t.requires_grad:
                if t.grad is None:
                    return CheckResult(False, None, tol, f"no gradient w.r.t. {name}", "full output")
                if not bool(torch.isfinite(t.grad).all()):
                    return CheckResult(False, math.inf, tol, f"non-finite gradient w.r.t. {name}", "full output")
    axes = TOKEN_AXES.get(meta.form)
    if axes is None or not case.causal:
        return CheckResult(True, None, tol, f"form {meta.form!r}: finite check only", "finite only")
    in_axes, out_axis = axes
    m = min(case.N, CHECK_TOKENS)
    sliced: dict[str, Any] = {}
    for name, v in prep.inputs.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
            if name in in_axes:
                v = v[:1].narrow(in_axes[name], 0, m)
        sliced[name] = v
    with torch.no_grad():
        ref = reference_output(rec, sliced)
    got = out[:1].narrow(out_axis, 0, m)
    err = relative_error(got, ref)
    scope = f"batch 0, first {m} of {case.N} tokens vs float64 {meta.form} reference"
    if case.mode == "fwd+bwd":
        scope += "; gradients finite"
    if not err.finite or err.rel_err > tol:
        return CheckResult(False, err.rel_err, tol, f"error {err.rel_err:.2e} > tolerance {tol:.1e}", scope)
    return CheckResult(True, err.rel_err, tol, "", scope)


# -- entry point -------------------------------------------------------------------------------------------------
def prepare(spec: Any, registry: Registry) -> Workload:
    """The workload of suite case ``spec`` (a :class:`bkbench.harness.suites.CaseSpec`). Raises :class:`Skip`."""
    if spec.impl not in registry:
        failures = "; ".join(f"{f.module}: {f.error}" for f in registry.failures if spec.impl in f.module)
        raise Skip(f"implementation {spec.impl!r} is not registered" + (f" ({failures})" if failures else ""))
    rec = registry.get(spec.impl)
    if rec.kind == "bk":
        return prepare_bk(spec, rec, registry)
    return prepare_baseline(spec, rec, registry)
