"""The baseline battery: every SSM / attention baseline against its float64 reference at small sizes.

``check(impl, device)`` returns :class:`bkbench.harness.gate_result.GateResult` rows, so ``bkbench gate`` shows them in
the same table as the BK-core battery. Values are compared with :func:`bkbench.harness.accuracy.relative_error`
(max |out - ref| / max |ref|; NaN/Inf never passes); differentiable baselines also get gradients of every
input checked against autograd through the float64 reference. Sizes are awkward on purpose: N = 1, 2, 3,
odd, not a power of two, across chunk (64) and tile boundaries; several seeds; block-sparse attention at
s = 0 and s > 0.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bkbench.baseline_meta import meta_of
from bkbench.harness.accuracy import relative_error
from bkbench.harness.baselines.case import DTYPE_NAMES, Case
from bkbench.harness.baselines.forms import FORMS, build_inputs, reference_output
from bkbench.harness.baselines.prepare import decline_reason, resolve
from bkbench.harness.gate_result import GateResult
from bkbench.registry import Implementation, Registry

TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}
GRAD_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3, torch.bfloat16: 6e-2, torch.float16: 2e-2}

VALUE_N = (1, 2, 3, 17, 64, 100, 130)
HEAVY_VALUE_N = (3, 100, 130)  # heavy_compile baselines on CUDA: every shape is a compile / autotune sweep
CUDA_FLEX_TILE = 128  # compiled FlexAttention on an H100 rejected 32-token tiles (BLOCK_M/BLOCK_N > 32)
HALF_N = (17, 64, 130)
GRAD_N = (33, 100)

# Small shapes per form: (B, d, state); d is a multiple of 64 where heads are needed.
SHAPES = {
    "selective_scan": [(2, 8, 4), (1, 16, 16)],
    "ssd": [(2, 128, 16), (1, 64, 64)],
    "gla": [(2, 128, None)],
    "attention": [(2, 128, None)],
    # d = 256 (4 heads) as in the suites' d = 256 groups: fla-core compiles per head count, so the CUDA battery
    # leaves the Triton cache holding what those timed cases need
    "delta_rule": [(2, 256, None)],
    "gated_delta_rule": [(2, 256, None)],
    "kda": [(2, 256, None)],
    "rwkv7": [(2, 256, None)],
}


@dataclass(frozen=True)
class CheckCase:
    name: str
    case: Case
    grad: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def battery(
    rec: Implementation,
    device: str,
    seeds: tuple[int, ...] = (0, 1),
    quick: bool = False,
    dtypes: tuple[torch.dtype, ...] | None = None,
) -> list[CheckCase]:
    """Check cases for ``rec`` on ``device``: its declared dtypes (or those of them in ``dtypes``) x awkward N
    x seeds, plus gradient cases."""
    meta = meta_of(rec)
    out: list[CheckCase] = []
    wanted = dtypes or (torch.float64, torch.float32, torch.bfloat16, torch.float16)
    dtypes = [d for d in wanted if d in rec.dtypes]
    flex = meta.setup is not None
    heavy = meta.heavy_compile and device == "cuda"
    value_n = HEAVY_VALUE_N if heavy else (VALUE_N[::2] if quick else VALUE_N)
    tile = {"tile": CUDA_FLEX_TILE if device == "cuda" else 32} if flex else {}
    shapes = SHAPES[meta.form][:1] if heavy else SHAPES[meta.form]
    for dtype in dtypes:
        ns = value_n if dtype in (torch.float64, torch.float32) else HALF_N
        for si, (b, d, state) in enumerate(shapes):
            for n in ns if si == 0 else ns[-2:]:
                for seed in seeds:
                    s = (0.0, 0.5, 0.3)[seed % 3] if flex else 0.0
                    case = Case(B=b, N=n, d=d, dtype=dtype, device=device, sparsity=s, seed=seed, state=state)
                    out.append(CheckCase(f"{meta.form} N={n} {DTYPE_NAMES[dtype]}", case, False, tile))
        if flex and dtype == torch.float32:  # the default 128-token tiles, 3 tiles with a partial one
            case = Case(B=1, N=300, d=128, dtype=dtype, device=device, sparsity=0.4, seed=seeds[0])
            out.append(CheckCase(f"{meta.form} N=300 tile 128 {DTYPE_NAMES[dtype]}", case))
    if rec.differentiable:
        for dtype in dtypes:
            b, d, state = SHAPES[meta.form][0]
            for n in GRAD_N if dtype in (torch.float64, torch.float32) else GRAD_N[:1]:
                s = 0.5 if flex else 0.0
                case = Case(B=b, N=n, d=d, dtype=dtype, device=device, sparsity=s, mode="fwd+bwd",
                            seed=seeds[0], state=state)
                out.append(CheckCase(f"{meta.form} grad N={n} {DTYPE_NAMES[dtype]}", case, True, tile))
    return out


def _tolerance(rec: Implementation, dtype: torch.dtype, grad: bool) -> tuple[float, str]:
    meta = meta_of(rec)
    base = (GRAD_TOLERANCE if grad else TOLERANCE)[dtype]
    override = meta.tolerances.get(dtype)
    if override is None:
        return base, ""
    return (max(override, base) if grad else override), f" (tolerance override: {meta.tolerance_note})"


def _is_float(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.is_floating_point()


def _call(rec: Implementation, inputs: dict[str, Any], options: dict[str, Any]) -> torch.Tensor:
    opts = {**rec.defaults, **options}
    return rec.fn(**inputs, **{k: v for k, v in opts.items() if k not in inputs})


def _check_value(rec: Implementation, cc: CheckCase) -> GateResult:
    tol, note = _tolerance(rec, cc.case.dtype, False)
    res = GateResult(rec.name, cc.name, cc.case.key, "value", "fail", tolerance=tol)
    inputs = build_inputs(rec, cc.case, {**rec.defaults, **cc.options})
    out = _call(rec, inputs, cc.options)
    like = inputs[FORMS[meta_of(rec).form].out_like]
    if tuple(out.shape) != tuple(like.shape) or out.dtype != like.dtype or out.device != like.device:
        res.detail = (
            f"returned {tuple(out.shape)} {out.dtype} on {out.device}, expected {tuple(like.shape)} {like.dtype} "
            f"on {like.device}"
        )
        return res
    err = relative_error(out, reference_output(rec, inputs).cpu())
    res.error = err.rel_err
    if not err.finite:
        res.detail = "non-finite values in the output"
    elif err.rel_err > tol:
        res.detail = f"error {err.rel_err:.2e} > tolerance {tol:.1e}{note}"
    else:
        res.status = "pass"
        res.detail = note.strip()
    return res


def _check_grad(rec: Implementation, cc: CheckCase) -> GateResult:
    form = FORMS[meta_of(rec).form]
    tol, note = _tolerance(rec, cc.case.dtype, True)
    res = GateResult(rec.name, cc.name, cc.case.key, "grad", "fail", tolerance=tol)
    inputs = build_inputs(rec, cc.case, {**rec.defaults, **cc.options})
    out = _call(rec, inputs, cc.options)
    gen = torch.Generator().manual_seed(cc.case.seed + 1000)
    gout = torch.randn(tuple(out.shape), generator=gen, dtype=torch.float64).to(out.dtype)
    out.backward(gout.to(out.device))
    ref_inputs = {
        k: (v.detach().to(torch.float64).requires_grad_(k in form.grad_inputs) if _is_float(v) else v)
        for k, v in inputs.items()
    }
    reference_output(rec, ref_inputs, detach=False).backward(gout.to(torch.float64).to(out.device))
    worst, worst_name = 0.0, ""
    for name in form.grad_inputs:
        got = inputs[name].grad
        if got is None:
            res.detail = f"no gradient w.r.t. {name}"
            return res
        err = relative_error(got, ref_inputs[name].grad.cpu())
        if not err.finite:
            res.error, res.detail = float("inf"), f"non-finite gradient w.r.t. {name}"
            return res
        if err.rel_err >= worst:
            worst, worst_name = err.rel_err, name
    res.error = worst
    if worst > tol:
        res.detail = f"gradient error {worst:.2e} (w.r.t. {worst_name}) > tolerance {tol:.1e}{note}"
    else:
        res.status = "pass"
        res.detail = note.strip()
    return res


def check(
    impl: str | Implementation,
    device: str = "cpu",
    *,
    seeds: tuple[int, ...] | list[int] = (0, 1),
    quick: bool = False,
    registry: Registry | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
) -> list[GateResult]:
    """Run the baseline battery for one baseline on ``device``; returns ``bkbench.harness.gate_result.GateResult`` rows.

    A case the baseline declines here (wrong device, not installed, dtype) is a "skip" with the reason; an
    exception is a "fail" naming it. After a CUDA error that poisons the context (a kernel fault), the
    remaining cases of this call are failed with that reason instead of being run.
    """
    rec = resolve(impl, registry)
    results = []
    poisoned = ""
    for cc in battery(rec, device, tuple(seeds), quick, dtypes):
        check_kind = "grad" if cc.grad else "value"
        reason = decline_reason(rec, cc.case)
        if poisoned and not reason:
            results.append(GateResult(rec.name, cc.name, cc.case.key, check_kind, "fail", detail=poisoned))
            continue
        if reason:
            results.append(GateResult(rec.name, cc.name, cc.case.key, check_kind, "skip", detail=reason))
            continue
        t0 = time.perf_counter()
        try:
            res = _check_grad(rec, cc) if cc.grad else _check_value(rec, cc)
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
            res = GateResult(rec.name, cc.name, cc.case.key, check_kind, "fail",
                             detail=f"{type(exc).__name__}: {exc}{where}")
            if type(exc).__name__ == "AcceleratorError":
                poisoned = f"not run: an earlier case faulted the CUDA context ({str(exc).splitlines()[0]})"
        res.seconds = time.perf_counter() - t0
        results.append(res)
    return results
