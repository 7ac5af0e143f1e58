"""One BK-core benchmark case, prepared the same way by every benchmark front end.

The asv suite (``suites/asv_benchmarks``), the pytest-benchmark suite (``tests/benchmarks``) and the pre-merge
check (:mod:`bkbench.harness.premerge`) all time the same two callables, under ``torch.no_grad()``, as the suite runner
does (``bkbench.harness.workloads.prepare_bk``, mode ``fwd``):

``Case.fn``         the **user call** (the headline): ``bkbench.bk_core(a, b, c, z, impl=name)`` with the inputs
                    as a user holds them — ``a`` (B, N) in the case dtype, ``b``, ``c`` (B, N-1) tensors (or
                    numbers for a scalar coupling), ``z`` a number; validation, normalisation and the coupling
                    product happen inside, as in a model. Value checks are off (:func:`no_check_kwargs`).
``Case.kernel_fn``  the **bare kernel**: the registered function ``rec.fn(a, k, z)`` on inputs already in the
                    kernel calling convention (``docs/architecture.md``), normalised once, outside the timing.

Each has its own ideal bytes (:func:`call_ideal_bytes`: a, b, c read, G written — fp32 with separate b, c:
20 B per element, 12 B with scalar couplings; :func:`ideal_bytes`: a, k read, G written — 16 B per element).

This module imports only the foundation API that every commit of bkbench has (``bkbench.registry``,
``bkbench.validate``; ``problems``, ``reference`` and ``accuracy`` from ``bkbench.harness``, or from ``bkbench``
in a commit from before the harness had its own folder) plus its sibling files ``timing.py`` and
``benchtimer.py`` loaded *by path* (:func:`tree_module`). That lets asv and the pre-merge
check load this file from the current working tree while they benchmark an older commit: the measuring code is
the same for every commit, so a change in the history is a change in the kernel, not in the harness.

Shapes: a case is ``B`` independent chains of length ``N`` (``Problem(batch=(B,), n=N)``); ``a`` (B, N) real,
``b``, ``c`` (B, N-1) per-position couplings (Laplacian: b = c = 1), ``z`` = 1j; the kernel gets ``k = b*c``
(B, N-1) and ``z`` (B,) complex; ``G`` (B, N) complex64 (float32 work) or complex128 (float64 work).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bkbench.registry import Implementation, Registry, default_registry, is_uniform
from bkbench.validate import HALF_DTYPES, normalize

try:
    from bkbench.harness.problems import Inputs, Problem, make_inputs
except ModuleNotFoundError:  # an installed commit from before bkbench/harness/ (asv's history, a premerge base)
    from bkbench.problems import Inputs, Problem, make_inputs  # type: ignore[no-redef]

# Set to 1 to time Triton kernels under TRITON_INTERPRET=1 (CPU). Off by default: the interpreter emulates the
# kernel in NumPy, seconds per call, and its time says nothing about the kernel.
ALLOW_INTERPRETED_ENV = "BKBENCH_BENCH_INTERPRETED"


class Skip(Exception):
    """The case cannot be timed here; ``str(exc)`` is the reason (reported by asv / pytest as a skip)."""


def tree_module(name: str) -> types.ModuleType:
    """Load ``bkbench/<name>.py`` of *this file's* tree by path, under a private module name.

    Used for ``timing`` and ``benchtimer`` so that the installed ``bkbench`` (maybe an older commit, under asv
    or the pre-merge check) does not decide which measuring code runs.
    """
    modname = f"_bkbench_tree_{name}"
    mod = sys.modules.get(modname)
    if mod is not None:
        return mod
    path = Path(__file__).resolve().with_name(f"{name}.py")
    if not path.is_file():
        raise ImportError(f"{path} not found: bkbench/{name}.py is part of the benchmark harness")
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


# -- implementations -----------------------------------------------------------------------------------------
def _triton_refs(mod: types.ModuleType) -> bool:
    for value in vars(mod).values():
        if isinstance(value, types.ModuleType):
            if value.__name__ == "triton" or value.__name__.startswith("triton."):
                return True
        elif type(value).__module__.startswith("triton"):  # JITFunction, Autotuner, InterpretedFunction ...
            return True
    return False


def uses_triton(rec: Implementation) -> bool:
    """True when ``rec`` is a Triton kernel: its module (or a ``kernels`` module it imports as a module) imports
    ``triton`` or defines Triton kernels, or its name says so. A heuristic; it only decides whether a timing
    under the CPU interpreter is meaningful."""
    if "triton" in rec.name:
        return True
    mod = sys.modules.get(rec.module)
    if mod is None:
        return False
    if _triton_refs(mod):
        return True
    for value in vars(mod).values():
        # a kernel helper module: bkbench.kernels.* (a tree before the kernels moved under bkbench: kernels.*)
        helper = isinstance(value, types.ModuleType) and value.__name__.startswith(("bkbench.kernels.", "kernels."))
        if helper and _triton_refs(value):
            return True
    return False


def triton_interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def work_dtype(rec: Implementation, problem: Problem) -> torch.dtype | None:
    """dtype of ``a`` that ``bk_core`` would hand to ``rec`` for ``problem``; None when ``rec`` cannot take it."""
    dt = problem.torch_dtype
    if problem.complex_a:
        dt = torch.complex128 if problem.dtype == "float64" else torch.complex64
    if dt in rec.dtypes:
        return dt
    if dt in HALF_DTYPES and torch.float32 in rec.dtypes:
        return torch.float32
    return None


def decline_reason(rec: Implementation, problem: Problem, allow_interpreted: bool | None = None) -> str | None:
    """Why ``rec`` cannot be *timed* on ``problem`` here, or None.

    Covers the registry's reasons (device, availability, ``supports``), the dtype, and Triton kernels under the
    CPU interpreter (not timed unless ``allow_interpreted`` or ``$BKBENCH_BENCH_INTERPRETED=1``).
    """
    if rec.kind != "bk":
        return f"{rec.name} is a {rec.kind} baseline, not a BK-core implementation"
    if problem.device == "cuda" and not torch.cuda.is_available():
        return "needs a CUDA GPU (torch.cuda.is_available() is False here)"
    reason = rec.decline_reason(problem)
    if reason:
        return reason
    if work_dtype(rec, problem) is None:
        names = ", ".join(str(d).replace("torch.", "") for d in rec.dtypes)
        return f"no {problem.dtype} support (takes {names})"
    if allow_interpreted is None:
        allow_interpreted = os.environ.get(ALLOW_INTERPRETED_ENV, "0") not in ("", "0")
    if problem.device == "cpu" and triton_interpreter_on() and uses_triton(rec) and not allow_interpreted:
        return (f"Triton kernel under the CPU interpreter: its time measures the emulator, not the kernel "
                f"(correctness is the gate's job; set {ALLOW_INTERPRETED_ENV}=1 to time it anyway)")
    return None


# -- cases ---------------------------------------------------------------------------------------------------
def _elt(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def ideal_bytes(chains: int, n: int, a_dtype: torch.dtype, k: torch.Tensor | None, out_dtype: torch.dtype) -> int:
    """Compulsory bytes of one forward call: read a (B, N), k (B, N-1) unless uniform, z (B,); write G (B, N).

    The same convention as the suite runner's work model: fp32 a + fp32 k + complex64 G = 16 B per element.
    """
    k_bytes = 0 if k is None or is_uniform(k) else chains * max(n - 1, 0) * _elt(k.dtype)
    return chains * n * _elt(a_dtype) + k_bytes + chains * _elt(out_dtype) + chains * n * _elt(out_dtype)


def _arg_bytes(x: Any) -> int:
    """Bytes a call reads for argument ``x``: a tensor's elements at its own dtype; a Python number: 0."""
    return x.numel() * x.element_size() if isinstance(x, torch.Tensor) else 0


def call_ideal_bytes(inputs: Inputs, out_dtype: torch.dtype) -> int:
    """Compulsory bytes of one forward *user call* ``bk_core(a, b, c, z)``: a, b, c (and z when it is a tensor)
    read at their own dtypes, G written. Numbers cost nothing. fp32 a, b, c + complex64 G = 20 B per element;
    scalar couplings 12 B; bf16 a, b, c + complex64 G = 14 B."""
    g_bytes = inputs.a.numel() * _elt(out_dtype)
    return sum(_arg_bytes(x) for x in (inputs.a, inputs.b, inputs.c, inputs.z)) + g_bytes


def no_check_kwargs(bk_core: Callable[..., Any]) -> dict[str, bool]:
    """The keyword that turns ``bk_core``'s value checks (NaN/Inf scans, host synchronisations) off:
    ``check=False`` when ``bk_core`` takes ``check``; ``check_finite=False`` on commits before that API
    (the fallback can go once no benchmarked commit needs it); nothing when it takes neither."""
    try:
        params = inspect.signature(bk_core).parameters
    except (TypeError, ValueError):
        return {}
    if "check" in params:
        return {"check": False}
    if "check_finite" in params:
        return {"check_finite": False}
    return {}


TARGETS = ("call", "kernel")  # what a benchmark times: the user call bk_core(...) or the bare kernel


@dataclass
class Case:
    """A prepared case. ``fn()`` makes the user call ``bk_core(a, b, c, z, impl=...)`` once and returns G (B, N);
    ``kernel_fn()`` runs the bare kernel on prepared inputs (no validation, no copies) and returns G (B, N).
    ``ideal_bytes`` / ``kernel_ideal_bytes``: each callable's own compulsory bytes per call."""

    impl: str
    problem: Problem
    fn: Callable[[], torch.Tensor]
    inputs: Inputs
    work_dtype: torch.dtype
    uniform_k: bool
    ideal_bytes: int
    kernel_fn: Callable[[], torch.Tensor]
    kernel_ideal_bytes: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.problem.device

    @property
    def key(self) -> str:
        return f"{self.impl}:{self.problem.key}"

    def gbs(self, seconds: float) -> float:
        """Achieved bandwidth in GB/s (1e9 B/s) of the user call taking ``seconds``, by :attr:`ideal_bytes`."""
        return self.ideal_bytes / seconds / 1e9

    def kernel_gbs(self, seconds: float) -> float:
        """Achieved bandwidth in GB/s of the bare kernel taking ``seconds``, by :attr:`kernel_ideal_bytes`."""
        return self.kernel_ideal_bytes / seconds / 1e9

    def callable(self, target: str = "call") -> Callable[[], torch.Tensor]:
        """``fn`` for ``target`` "call" (the user call), ``kernel_fn`` for "kernel" (the bare kernel)."""
        if target not in TARGETS:
            raise ValueError(f"target: {target!r} is not one of {TARGETS}")
        return self.fn if target == "call" else self.kernel_fn


def make_problem(batch: int, n: int, dtype: str = "float32", device: str = "cpu", **fields: Any) -> Problem:
    """The benchmark problem: ``batch`` chains of length ``n``, Laplacian couplings, z = 1j, seed 0."""
    if batch < 1:
        raise ValueError(f"batch: must be >= 1, got {batch}")
    return Problem(batch=(int(batch),), n=int(n), dtype=dtype, device=device, **fields)


def prepare(
    rec: Implementation,
    problem: Problem,
    options: dict[str, Any] | None = None,
    allow_interpreted: bool | None = None,
    warm: bool = True,
) -> Case:
    """Build inputs (deterministic in the problem's seed) and the timed callable; raise :class:`Skip` with the
    reason when the case cannot be timed here. ``warm`` makes the first call of each callable (compilation,
    autotuning) now. Both callables read the same seeded inputs (``make_inputs(problem)``)."""
    import bkbench

    reason = decline_reason(rec, problem, allow_interpreted)
    if reason:
        raise Skip(reason)
    inputs = make_inputs(problem)
    norm = normalize(inputs.a, inputs.b, inputs.c, inputs.z)
    wdt = work_dtype(rec, problem)
    assert wdt is not None
    a = norm.a if norm.a.dtype == wdt else norm.a.to(wdt)
    k, z = norm.k, norm.z
    opts = {**rec.defaults, **(options or {})}
    impl_fn = rec.fn
    bk_core = bkbench.bk_core
    call_kw = {**no_check_kwargs(bk_core), **opts}
    ua, ub, uc, uz = inputs.a, inputs.b, inputs.c, inputs.z
    name = rec.name

    def fn() -> torch.Tensor:
        with torch.no_grad():
            return bk_core(ua, ub, uc, uz, impl=name, **call_kw)

    def kernel_fn() -> torch.Tensor:
        with torch.no_grad():
            return impl_fn(a, k, z, **opts)

    case = Case(
        impl=rec.name, problem=problem, fn=fn, inputs=inputs, work_dtype=wdt, uniform_k=is_uniform(k),
        ideal_bytes=call_ideal_bytes(inputs, norm.out_dtype), kernel_fn=kernel_fn,
        kernel_ideal_bytes=ideal_bytes(a.shape[0], a.shape[1], a.dtype, k, norm.out_dtype), options=opts,
    )
    if warm:
        fn()
        kernel_fn()
        tree_module("benchtimer").synchronize()
    return case


def find(name: str, registry: Registry | None = None) -> Implementation:
    """The BK-core implementation ``name`` of ``registry`` (default: the discovered one)."""
    rec = (registry or default_registry()).get(name)
    if rec.kind != "bk":
        raise ValueError(f"impl: {name!r} is a {rec.kind} baseline, not a BK-core implementation")
    return rec


def relative_error(case: Case, chains: int = 4, target: str = "call") -> float:
    """max|G - G_ref| / max|G_ref| over the first ``chains`` chains of ``target``'s result ("call": the user
    call, "kernel": the bare kernel), against the float64 reference (inf on NaN)."""
    try:
        from bkbench.harness.accuracy import relative_error as _rel
        from bkbench.harness.reference import reference
    except ModuleNotFoundError:  # an installed commit from before bkbench/harness/
        from bkbench.accuracy import relative_error as _rel  # type: ignore[no-redef]
        from bkbench.reference import reference  # type: ignore[no-redef]

    m = max(1, min(chains, case.problem.chains))
    inp = case.inputs
    a, b, c, z = inp.a, inp.b, inp.c, inp.z
    a2 = a.reshape(-1, a.shape[-1])[:m]
    b2 = b.reshape(-1, b.shape[-1])[:m] if isinstance(b, torch.Tensor) else b
    c2 = c.reshape(-1, c.shape[-1])[:m] if isinstance(c, torch.Tensor) else c
    z2 = z.reshape(-1)[:m] if isinstance(z, torch.Tensor) else z
    g = case.callable(target)().reshape(-1, a.shape[-1])[:m]
    ref = reference(Inputs(a2.cpu(), b2.cpu() if isinstance(b2, torch.Tensor) else b2,
                           c2.cpu() if isinstance(c2, torch.Tensor) else c2,
                           z2.cpu() if isinstance(z2, torch.Tensor) else z2))
    return float(_rel(g, ref).rel_err)


# -- timing ----------------------------------------------------------------------------------------------------
def timing_mode(device: str) -> str:
    """The harness mode that matches a synchronised wall-clock framework: back-to-back calls, no L2 flush."""
    return "cpu" if device == "cpu" else "warm"


def measure(case: Case, mode: str | None = None, budget_s: float = 1.0, rel_ci: float = 0.01,
            warmup_s: float = 0.05, min_reps: int = 10, target: str = "call") -> Any:
    """Time ``target`` of ``case`` ("call": the user call ``case.fn``; "kernel": the bare kernel) with the
    harness's own engine (``bkbench/harness/timing.py``: CUDA events on the GPU, ``perf_counter`` on the CPU). Returns
    its ``Timing`` (``.median`` seconds per call, ``.stats``, ``.samples``)."""
    timing = tree_module("timing")
    cfg = timing.TimingConfig(mode=mode or timing_mode(case.device), warmup_s=warmup_s, budget_s=budget_s,
                              rel_ci=rel_ci, min_reps=min_reps)
    return timing.measure(case.callable(target), cfg, case.device)


def copy_bandwidth(device: str) -> float:
    """Measured copy bandwidth of ``device`` in GB/s (read + write), the roofline of a BK-core kernel."""
    return float(tree_module("timing").copy_bandwidth(device))
