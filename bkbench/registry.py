"""The implementation registry.

An implementation is a plain function decorated with :func:`register`. The decorator does not mutate any
global table: it attaches an :class:`Implementation` record to the function (``fn.__bkbench__``). A
:class:`Registry` is an explicit object that collects records — by discovery (every module of the
``bkbench.kernels`` package and of the ``bkbench.kernels`` entry-point group) or by hand in a test::

    reg = Registry()

    @reg.register("mine", kind="bk", exact=True, devices=("cpu",), dtypes=(torch.float64,))
    def mine(a, k, z): ...

``bkbench.implementations()`` and ``bkbench.bk_core`` use :func:`default_registry`, built once on first use.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch

KINDS = ("bk", "ssm", "attention")
DEVICES = ("cpu", "cuda")
ENTRY_POINT_GROUP = "bkbench.kernels"
ATTR = "__bkbench__"


@dataclass(frozen=True)
class Implementation:
    """One registered implementation.

    Attributes:
        name: registry name; for BK-core kernels it equals the module's file name.
        fn: the callable. For ``kind == "bk"``: ``fn(a, k, z, **options) -> G`` (see docs/architecture.md).
        kind: ``"bk"``, ``"ssm"`` or ``"attention"``.
        exact: True when the result equals the exact BK-core up to rounding; False for approximations, which
            must declare ``error_model``.
        devices: device types it runs on (``"cpu"``, ``"cuda"``).
        dtypes: input dtypes it accepts natively.
        differentiable: supports autograd w.r.t. ``a`` (and ``z``).
        baseline: the reference point that speedups are quoted against (one per kind).
        description: one line for tables.
        defaults: default keyword options.
        error_model: ``(problem, options) -> relative tolerance`` for approximate implementations.
        available: ``() -> None`` when usable here, else the reason it is not (missing package, no GPU...).
        supports: ``(problem) -> None`` when it takes the case, else the reason it declines it.
        call: optional entry point of :func:`bkbench.bk_core` that takes the user's inputs as they are
            (``call(args: bkbench.validate.CallArgs, needs_grad: bool, **options) -> G (B, N)``): the couplings
            and shift reach the kernel without copies. Without it, ``bk_core`` forms ``k = b * c`` and a shift
            tensor in the compute precision and calls ``fn``.
        vjp: optional explicit vector-Jacobian product used by the ``bkbench::bk_core`` operator's backward
            (``vjp(args, g, grad_g, need_a, need_z, **options) -> (grad_a (B, N) | None, grad_z (B,) | None)``);
            without it the operator recomputes ``fn`` under autograd.
        bind: optional fast path of eager :func:`bkbench.bk_core` calls (``bind(args, needs_grad, **options) ->
            bound | None``): after a call succeeded on the full path, ``bound(a, b, c, z) -> G | None`` runs later
            calls of the same signature with everything derived from metadata fixed (``bkbench.bound_calls``);
            returning None hands a call back to the full path.
        bind_vjp: optional fast path of the operator's backward, as ``bind`` (``bind_vjp(args, **options) ->
            bound | None``; ``bound(a, b, c, z, g, grad_g, need_a, need_z) -> (grad_a, grad_z) | None``, what
            ``vjp`` returns).
        module: the module that defined it.
        deterministic: two calls on the same inputs give bitwise-equal results (the gate checks it; set False
            for an implementation whose result legitimately varies, e.g. through atomics, and the gate then only
            asks that the two calls agree within the tolerance).
        extra_checks: optional checks the gate runs for this implementation after its battery (``bkbench gate``
            without ``--no-tuned``): ``extra_checks(rec, device, *, quick, progress, jobs) -> list[GateResult]``
            (:class:`bkbench.harness.gate_result.GateResult` rows; ``progress(impl, case)`` before or after each check,
            ``jobs`` processes at most). A callable or its import path ``"module:function"`` (loaded when the
            gate runs). ``triton_fused``: its tuned launch configurations (``bkbench.harness.gate_tuned:gate_checks``).
        tuner: optional tuned-table provider: a module, or its import path, with the interface of
            ``bkbench.kernels.bk._triton_fused_tables`` -- ``bucket(batch, n)`` (shape bucket), ``GpuId`` /
            ``gpu_id()`` / ``INTERPRETER`` / ``known_gpu(name)`` (GPU identities) and ``explain_for(gpu, dtype,
            scalar_coupling, batch, n)`` (the configs a problem runs with). ``impl="auto"`` takes its shape
            buckets and GPU identities from it (:mod:`bkbench.dispatch`); ``bkbench explain-auto`` shows the
            configs of a pick that has one.
        fallback_rank: per device type, this implementation's place in ``impl="auto"``'s fixed preference order
            when no measurement decides (lowest first; :meth:`Registry.fallback_order`). A device without a
            rank: never a fallback there.
    """

    name: str
    fn: Callable[..., Any]
    kind: str = "bk"
    exact: bool = True
    devices: tuple[str, ...] = DEVICES
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
    differentiable: bool = False
    baseline: bool = False
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    error_model: Callable[..., float] | None = None
    available: Callable[[], str | None] = staticmethod(lambda: None)  # type: ignore[assignment]
    supports: Callable[[Any], str | None] = staticmethod(lambda problem: None)  # type: ignore[assignment]
    call: Callable[..., Any] | None = None
    vjp: Callable[..., Any] | None = None
    bind: Callable[..., Any] | None = None
    bind_vjp: Callable[..., Any] | None = None
    module: str = ""
    deterministic: bool = True
    extra_checks: str | Callable[..., Any] | None = None
    tuner: str | ModuleType | None = None
    fallback_rank: dict[str, int] = field(default_factory=dict)

    def unavailable_reason(self) -> str | None:
        """The reason this implementation cannot run here, or None. Never raises."""
        try:
            return self.available()
        except Exception as exc:  # an availability probe must not take the harness down
            return f"availability check raised {type(exc).__name__}: {exc}"

    def decline_reason(self, problem: Any) -> str | None:
        """Why this implementation declines ``problem`` (device, dtype, size...), or None."""
        if problem.device not in self.devices:
            return f"runs on {', '.join(self.devices)}, not {problem.device}"
        reason = self.unavailable_reason()
        if reason:
            return reason
        return self.supports(problem)

    def tolerance(self, problem: Any, options: dict[str, Any] | None = None) -> float | None:
        """Declared tolerance of an approximate implementation (None for exact ones)."""
        if self.exact or self.error_model is None:
            return None
        return float(self.error_model(problem, {**self.defaults, **(options or {})}))

    def load_extra_checks(self) -> Callable[..., Any] | None:
        """The ``extra_checks`` callable (imported when given as ``"module:function"``), or None."""
        return _load(self.extra_checks)

    def load_tuner(self) -> Any:
        """The ``tuner`` module (imported when given as a module path), or None."""
        return _load(self.tuner)


def _load(ref: Any) -> Any:
    """``ref`` itself, or what its import path names: ``"module"`` or ``"module:attribute"``."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


def _check_record(rec: Implementation) -> None:
    if not rec.name or not rec.name.replace("_", "").isalnum():
        raise ValueError(f"register: name {rec.name!r} must be a non-empty identifier (letters, digits, _)")
    if rec.kind not in KINDS:
        raise ValueError(f"register: kind {rec.kind!r} of {rec.name!r} must be one of {KINDS}")
    bad = [d for d in rec.devices if d not in DEVICES]
    if bad:
        raise ValueError(f"register: devices {bad} of {rec.name!r} must be among {DEVICES}")
    if not rec.exact and rec.kind == "bk" and rec.error_model is None:
        raise ValueError(f"register: approximate implementation {rec.name!r} needs error_model=")
    bad = [d for d in rec.fallback_rank if d not in rec.devices]
    if bad or not all(isinstance(r, int) for r in rec.fallback_rank.values()):
        raise ValueError(f"register: fallback_rank {rec.fallback_rank} of {rec.name!r} must map devices it runs on "
                         f"({', '.join(rec.devices)}) to integers")


def register(
    name: str,
    *,
    kind: str = "bk",
    exact: bool = True,
    devices: Iterable[str] = DEVICES,
    dtypes: Iterable[torch.dtype] = (torch.float32, torch.float64),
    differentiable: bool = False,
    baseline: bool = False,
    description: str = "",
    defaults: dict[str, Any] | None = None,
    error_model: Callable[..., float] | None = None,
    available: Callable[[], str | None] | None = None,
    supports: Callable[[Any], str | None] | None = None,
    call: Callable[..., Any] | None = None,
    vjp: Callable[..., Any] | None = None,
    bind: Callable[..., Any] | None = None,
    bind_vjp: Callable[..., Any] | None = None,
    deterministic: bool = True,
    extra_checks: str | Callable[..., Any] | None = None,
    tuner: str | ModuleType | None = None,
    fallback_rank: dict[str, int] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark ``fn`` as an implementation. Returns ``fn`` unchanged, with its record in ``fn.__bkbench__``.

    The function is collected by whichever :class:`Registry` scans its module; nothing global changes.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        rec = Implementation(
            name=name,
            fn=fn,
            kind=kind,
            exact=exact,
            devices=tuple(devices),
            dtypes=tuple(dtypes),
            differentiable=differentiable,
            baseline=baseline,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            defaults=dict(defaults or {}),
            error_model=error_model,
            available=available or (lambda: None),
            supports=supports or (lambda problem: None),
            call=call,
            vjp=vjp,
            bind=bind,
            bind_vjp=bind_vjp,
            module=getattr(fn, "__module__", ""),
            deterministic=deterministic,
            extra_checks=extra_checks,
            tuner=tuner,
            fallback_rank=dict(fallback_rank or {}),
        )
        _check_record(rec)
        setattr(fn, ATTR, tuple(getattr(fn, ATTR, ())) + (rec,))
        return fn

    return decorate


@dataclass(frozen=True)
class ImportFailure:
    """A kernels module that could not be imported: shown by ``bkbench list`` and the gate."""

    module: str
    error: str


class Registry:
    """An explicit collection of :class:`Implementation` records."""

    def __init__(self) -> None:
        self._records: dict[str, Implementation] = {}
        self.failures: list[ImportFailure] = []

    # -- building -------------------------------------------------------------------------------------
    def add(self, rec: Implementation) -> Implementation:
        """Add one record; a second record under the same name is an error (names are unique)."""
        _check_record(rec)
        old = self._records.get(rec.name)
        if old is not None and old.fn is not rec.fn:
            raise ValueError(
                f"implementation name {rec.name!r} is registered twice ({old.module} and {rec.module}); "
                "rename one of them"
            )
        self._records[rec.name] = rec
        return rec

    def register(self, name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: like :func:`register`, and also add the record to this registry."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(name, **kwargs)(fn)
            self.add(getattr(fn, ATTR)[-1])
            return fn

        return decorate

    def scan_module(self, module: ModuleType) -> list[Implementation]:
        """Add every decorated function defined in ``module``."""
        found = []
        for value in list(vars(module).values()):
            for rec in getattr(value, ATTR, ()) if callable(value) else ():
                if isinstance(rec, Implementation) and rec.module == module.__name__:
                    found.append(self.add(rec))
        return found

    def discover_package(self, package: str = "bkbench.kernels") -> None:
        """Import every module of ``package`` (recursively) and scan it; import errors are recorded."""
        try:
            pkg = importlib.import_module(package)
        except Exception as exc:
            self.failures.append(ImportFailure(package, _short_error(exc)))
            return
        self.scan_module(pkg)
        for info in sorted(pkgutil.walk_packages(pkg.__path__, prefix=package + "."), key=lambda i: i.name):
            try:
                mod = importlib.import_module(info.name)
            except Exception as exc:
                self.failures.append(ImportFailure(info.name, _short_error(exc)))
                continue
            self.scan_module(mod)

    def discover_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Scan modules (or decorated callables) published under the entry-point ``group``."""
        for ep in importlib.metadata.entry_points(group=group):
            try:
                obj = ep.load()
            except Exception as exc:
                self.failures.append(ImportFailure(f"{ep.name} ({ep.value})", _short_error(exc)))
                continue
            if isinstance(obj, ModuleType):
                self.scan_module(obj)
            else:
                for rec in getattr(obj, ATTR, ()):
                    self.add(rec)

    # -- querying -------------------------------------------------------------------------------------
    def get(self, name: str) -> Implementation:
        try:
            return self._records[name]
        except KeyError:
            known = ", ".join(sorted(self._records)) or "(none)"
            raise ValueError(f"impl: unknown implementation {name!r}; registered: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __len__(self) -> int:
        return len(self._records)

    def names(self, kind: str | None = None) -> list[str]:
        return [r.name for r in self.implementations(kind)]

    def implementations(
        self, kind: str | None = None, *, device: str | None = None, exact: bool | None = None
    ) -> list[Implementation]:
        """Records sorted by (kind, name), filtered by kind, device and exactness."""
        out = [
            r
            for r in self._records.values()
            if (kind is None or r.kind == kind)
            and (device is None or device in r.devices)
            and (exact is None or r.exact == exact)
        ]
        return sorted(out, key=lambda r: (KINDS.index(r.kind), r.name))

    def fallback_order(self, device: str) -> tuple[str, ...]:
        """``impl="auto"``'s fixed preference on ``device`` when no measurement decides: the records with a
        ``fallback_rank`` there, lowest rank first (then by name)."""
        ranked = [r for r in self._records.values() if device in r.fallback_rank]
        return tuple(r.name for r in sorted(ranked, key=lambda r: (r.fallback_rank[device], r.name)))


def _short_error(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


_DEFAULT: Registry | None = None


def default_registry(refresh: bool = False) -> Registry:
    """The registry of the ``bkbench.kernels`` package (the ``kernels/`` folder) plus installed plug-ins, built on
    first use."""
    global _DEFAULT
    if _DEFAULT is None or refresh:
        reg = Registry()
        reg.discover_package("bkbench.kernels")
        reg.discover_entry_points()
        _DEFAULT = reg
    return _DEFAULT


def implementations(kind: str | None = "bk", **filters: Any) -> list[Implementation]:
    """Records of the default registry (``kind=None`` for all kinds)."""
    return default_registry().implementations(kind, **filters)


def is_uniform(k: torch.Tensor) -> bool:
    """True when ``k`` is a stride-0 view of one value (a scalar coupling broadcast to (B, N-1))."""
    return k.dim() == 2 and k.numel() > 0 and all(s == 0 for s in k.stride())
