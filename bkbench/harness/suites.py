"""Declarative benchmark suites: TOML files in ``suites/`` (see docs/suites.md).

A suite is a list of groups; each group is a cartesian product

    implementations x N x batch x d x dtype x sparsity x mode x options x timing

with settings (time budget, warm-up, CI target, timeout, energy...) inherited suite -> group and
overridable per device (``[group.cpu]`` / ``[group.cuda]``) and per implementation (``[caps.<impl>]`` or
``[group.caps.<impl>]``: ``max_n``, ``max_elements``, ``max_chains`` and any setting). A case beyond a
cap is kept in the plan as ``skipped`` with the reason, so a report shows why it is missing.

``implementations`` is a list of registry names or one of ``"bk"``, ``"ssm"``, ``"attention"``,
``"baselines"``, ``"all"`` (everything registered of that kind, at run time); ``exclude`` removes names.
A suite is checked before anything runs (ValueError naming the suite, the group and the fix; ``bkbench run``
exits 2): an unknown top-level key, an unknown implementation name (a typo, a plug-in not passed with
``--plugin``), or a shape beyond any single device (more than :data:`MAX_ELEMENTS` elements n x batch x d). A
name whose kernel module is there but failed to import becomes a ``skipped`` case with the import error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from bkbench.registry import Registry

TOP_LEVEL_KEYS = ("name", "description", "settings", "caps", "group")
AXES = ("n", "batch", "d", "dtype", "sparsity", "mode", "options", "timing")
# n x batch x d above this cannot be run on any single device (2^34 elements: 64 GiB for one float32 input alone,
# 256 GiB for a BK-core forward at 16 B per element); such a case is a typo (N = 10^12), refused before running
MAX_ELEMENTS = 1 << 34
SETTINGS = {
    "budget_s": 1.0,  # wall-clock budget of the timed repetitions
    "warmup_s": 0.05,
    "rel_ci": 0.01,
    "min_reps": 10,
    "max_reps": 10_000,
    "min_reps_long": 3,
    "timeout_s": 300.0,  # the worker is killed and the case recorded as timeout after this
    "seed": 0,
    "check_seeds": [],
    "energy": False,
    "energy_window_s": 5.0,
    "energy_trials": 4,
    "energy_idle_s": 2.0,
    "energy_warmup_s": 1.0,
    "memory": True,
    "problem": {},  # extra Problem fields for BK cases (z as [re, im], coupling, potential...)
}
CAP_KEYS = ("max_n", "max_elements", "max_chains", "modes")
DEFAULT_AXES: dict[str, list[Any]] = {
    "batch": [1],
    "d": [1],
    "dtype": ["float32"],
    "sparsity": [0.0],
    "mode": ["fwd"],
    "options": [{}],
    "timing": ["cold"],
}
KIND_SELECTORS = {"bk": ("bk",), "ssm": ("ssm",), "attention": ("attention",),
                  "baselines": ("ssm", "attention"), "all": ("bk", "ssm", "attention")}
DTYPES = ("float32", "float64", "bfloat16", "float16")
MODES = ("fwd", "fwd+bwd")
TIMINGS = ("cold", "warm", "graph")


@dataclass(frozen=True)
class CaseSpec:
    """One case of a suite, everything a worker needs to run it (JSON-serialisable via to_dict)."""

    suite: str
    group: str
    impl: str
    kind: str
    n: int
    batch: int
    d: int
    dtype: str
    sparsity: float
    mode: str
    options: dict[str, Any]
    timing: str
    device: str
    seed: int = 0
    check_seeds: tuple[int, ...] = ()
    problem: dict[str, Any] = field(default_factory=dict)
    budget_s: float = 1.0
    warmup_s: float = 0.05
    rel_ci: float = 0.01
    min_reps: int = 10
    max_reps: int = 10_000
    min_reps_long: int = 3
    timeout_s: float = 300.0
    memory: bool = True
    energy: dict[str, Any] | None = None
    skip_reason: str | None = None

    @property
    def elements(self) -> int:
        return self.batch * self.d * self.n

    @property
    def case_key(self) -> str:
        """Self-describing shape key: ``B{batch}_d{d}_N{n}_{dtype}`` (+ sparsity, problem fields, seed)."""
        from bkbench.harness.problems import SHORT

        parts = [f"B{self.batch}", f"d{self.d}", f"N{self.n}", SHORT.get(self.dtype, self.dtype)]
        if self.sparsity:
            parts.append(f"s{self.sparsity:g}")
        for k in sorted(self.problem):
            v = self.problem[k]
            parts.append(f"{k}{'+'.join(f'{x:g}' for x in v) if isinstance(v, (list, tuple)) else v}")
        if self.seed:
            parts.append(f"seed{self.seed}")
        return "_".join(parts)

    @property
    def options_json(self) -> str:
        return json.dumps(self.options, sort_keys=True)

    @property
    def case_id(self) -> str:
        """Unique within a run: implementation, shape key, mode, timing mode and options."""
        opts = "" if not self.options else "|" + self.options_json
        return f"{self.impl}|{self.case_key}|{self.mode}|{self.timing}{opts}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["check_seeds"] = list(self.check_seeds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseSpec:
        d = dict(d)
        d["check_seeds"] = tuple(d.get("check_seeds") or ())
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        """The identity columns of the results store."""
        return {
            "case_id": self.case_id, "suite": self.suite, "case_key": self.case_key, "impl": self.impl,
            "kind": self.kind, "n": self.n, "batch": self.batch, "d": self.d, "dtype": self.dtype,
            "sparsity": self.sparsity, "mode": self.mode, "options_json": self.options_json, "device": self.device,
            "group": self.group,
        }


@dataclass
class Suite:
    """A parsed suite file. ``expand(registry, device)`` gives its cases."""

    name: str
    description: str
    path: Path | None
    settings: dict[str, Any]
    caps: dict[str, dict[str, Any]]
    groups: list[dict[str, Any]]
    device_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        blob = json.dumps([self.settings, self.caps, self.groups, self.device_settings], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def case_count(self) -> int:
        """Number of cases on this machine's default device (registry as discovered here)."""
        from bkbench.registry import default_registry

        return len(self.expand(default_registry(), default_device()))

    def expand(self, registry: Registry, device: str, groups: Iterable[str] | None = None) -> list[CaseSpec]:
        """All cases for ``device`` ("cpu" or "cuda"), in a deterministic order (problem-major)."""
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device: {device!r} is not 'cpu' or 'cuda'")
        wanted = set(groups) if groups is not None else None
        out: list[CaseSpec] = []
        seen: set[str] = set()
        for gi, group in enumerate(self.groups):
            gname = group.get("name") or f"group{gi + 1}"
            if wanted is not None and gname not in wanted:
                continue
            for spec in _expand_group(self, gname, group, registry, device):
                if spec.case_id not in seen:
                    seen.add(spec.case_id)
                    out.append(spec)
        if wanted is not None:
            known = {g.get("name") or f"group{i + 1}" for i, g in enumerate(self.groups)}
            missing = wanted - known
            if missing:
                raise ValueError(f"group: {sorted(missing)} not in suite {self.name!r}; groups: {sorted(known)}")
        return out


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def import_failure_of(name: str, registry: Registry) -> str | None:
    """The import error of the kernel module that would define ``name`` (``bkbench.kernels.<family>.<name>``, or an
    entry point of that name), or None when no such module failed."""
    for f in registry.failures:
        if f.module.startswith("bkbench.kernels.") and f.module.rsplit(".", 1)[-1] == name \
                or f.module.split(" ")[0] == name:
            return f"{f.module} failed to import: {f.error}"
    return None


def _resolve_impls(where: str, sel: Any, exclude: Iterable[str], registry: Registry) -> list[str]:
    names: list[str] = []
    for item in _as_list(sel):
        if item in KIND_SELECTORS:
            for kind in KIND_SELECTORS[item]:
                names += registry.names(kind)
        else:
            names.append(str(item))
    drop = set(exclude)
    out = [n for i, n in enumerate(names) if n not in drop and n not in names[:i]]
    unknown = [n for n in out if n not in registry and import_failure_of(n, registry) is None]
    if unknown:
        raise ValueError(f"{where}: unknown implementation(s) {unknown}; registered: {', '.join(registry.names(None))} "
                         "(or a selector: bk, ssm, attention, baselines, all); fix the name, or pass the module "
                         "that registers it with --plugin")
    return out


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        out.update({k: v for k, v in layer.items()})
    return out


def _validate_axes(where: str, axes: dict[str, list[Any]]) -> None:
    for v in axes["n"] + axes["batch"] + axes["d"]:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{where}: n, batch and d must be positive integers, got {v!r}")
    for n, batch, d in zip(axes["n"], axes["batch"], axes["d"]):
        if n * batch * d > MAX_ELEMENTS:
            raise ValueError(f"{where}: n x batch x d = {n} x {batch} x {d} = {n * batch * d:.3g} elements is beyond "
                             f"any single device (at most 2^34 = {MAX_ELEMENTS:.3g}; one float32 input alone would "
                             f"take {4 * n * batch * d / 2**30:.3g} GiB); lower n, batch or d")
    for v in axes["dtype"]:
        if v not in DTYPES:
            raise ValueError(f"{where}: dtype {v!r} is not one of {DTYPES}")
    for v in axes["mode"]:
        if v not in MODES:
            raise ValueError(f"{where}: mode {v!r} is not one of {MODES}")
    for v in axes["timing"]:
        if v not in TIMINGS:
            raise ValueError(f"{where}: timing {v!r} is not one of {TIMINGS}")
    for v in axes["sparsity"]:
        if not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
            raise ValueError(f"{where}: sparsity {v!r} must be a number in [0, 1)")
    for v in axes["options"]:
        if not isinstance(v, dict):
            raise ValueError(f"{where}: options must be a list of tables, e.g. options = [{{window = 8}}], got {v!r}")


def _cap_reason(impl: str, caps: dict[str, Any], n: int, chains: int, mode: str) -> str | None:
    if "modes" in caps and mode not in caps["modes"]:
        return f"suite cap for {impl}: mode {mode} is not in modes = {list(caps['modes'])}"
    if "max_n" in caps and n > caps["max_n"]:
        return f"suite cap for {impl}: N = {n} > max_n = {caps['max_n']}"
    if "max_elements" in caps and chains * n > caps["max_elements"]:
        return f"suite cap for {impl}: {chains * n} elements > max_elements = {caps['max_elements']}"
    if "max_chains" in caps and chains > caps["max_chains"]:
        return f"suite cap for {impl}: {chains} chains > max_chains = {caps['max_chains']}"
    return None


def _shapes(where: str, layered: dict[str, Any], axes: dict[str, list[Any]]) -> list[tuple[int, int, int]]:
    """(n, batch, d) triples: the explicit ``shapes`` list (zipped), else the product n x batch x d."""
    if "shapes" in layered:
        out = []
        for entry in _as_list(layered["shapes"]):
            if not isinstance(entry, dict) or "n" not in entry:
                raise ValueError(f"{where}: shapes must be a list of tables with n (and batch, d), e.g. "
                                 f"shapes = [{{n = 4096, batch = 8, d = 512}}], got {entry!r}")
            bad = set(entry) - {"n", "batch", "d"}
            if bad:
                raise ValueError(f"{where}: shapes entries take n, batch, d; got {sorted(bad)}")
            out.append((entry["n"], entry.get("batch", 1), entry.get("d", 1)))
        return out
    if axes["n"] == [None]:
        raise ValueError(f"{where}: n (or shapes) is required: the chain / sequence lengths")
    return list(itertools.product(axes["n"], axes["batch"], axes["d"]))


def _impl_caps(impl: str, device: str, *tables: dict[str, Any]) -> dict[str, Any]:
    """Caps and settings of ``impl`` on ``device``: each table's ``[caps.<impl>]`` then its ``[caps.<impl>.<device>]``,
    later tables overriding earlier ones."""
    layers = []
    for table in tables:
        entry = table.get(impl, {})
        layers.append({k: v for k, v in entry.items() if k not in ("cpu", "cuda")})
        layers.append(entry.get(device, {}))
    return _merge(*layers)


def _expand_group(suite: Suite, gname: str, group: dict[str, Any], registry: Registry, device: str) -> list[CaseSpec]:
    where = f"suite {suite.name!r}, group {gname!r}"
    dev = group.get(device, {})
    layered = _merge(group, dev)
    if "shapes" in group and "shapes" not in dev and any(k in dev for k in ("n", "batch", "d")):
        layered.pop("shapes")  # the device table's n x batch x d replaces the group's shapes
    axes = {a: _as_list(layered.get(a, DEFAULT_AXES.get(a))) for a in AXES}
    shapes = _shapes(where, layered, axes)
    axes.update(n=[s[0] for s in shapes], batch=[s[1] for s in shapes], d=[s[2] for s in shapes])
    _validate_axes(where, axes)
    if "implementations" not in layered:
        raise ValueError(f"{where}: implementations is required (names, or 'bk' / 'baselines' / 'all')")
    impls = _resolve_impls(where, layered["implementations"], _as_list(layered.get("exclude", [])), registry)
    settings = _merge(SETTINGS, suite.settings, suite.device_settings.get(device, {}),
                      {k: v for k, v in layered.items() if k in SETTINGS})
    timings = ["cpu"] if device == "cpu" else axes["timing"]
    out = []
    for (n, batch, d), dtype, sparsity in itertools.product(shapes, axes["dtype"], axes["sparsity"]):
        for impl in impls:
            kind = registry.get(impl).kind if impl in registry else "unknown"
            caps = _impl_caps(impl, device, suite.caps, group.get("caps", {}), group.get(device, {}).get("caps", {}))
            s = _merge(settings, {k: v for k, v in caps.items() if k in SETTINGS})
            unregistered = None if impl in registry else f"not registered: {import_failure_of(impl, registry)}"
            energy = None
            if s["energy"]:
                energy = {"window_s": s["energy_window_s"], "trials": s["energy_trials"],
                          "idle_s": s["energy_idle_s"], "warmup_s": s["energy_warmup_s"]}
            for mode, options, timing in itertools.product(axes["mode"], axes["options"], timings):
                reason = _cap_reason(impl, caps, n, batch * d, mode) or unregistered
                out.append(CaseSpec(
                    suite=suite.name, group=gname, impl=impl, kind=kind, n=n, batch=batch, d=d, dtype=dtype,
                    sparsity=float(sparsity), mode=mode, options=dict(options), timing=timing, device=device,
                    seed=int(s["seed"]), check_seeds=tuple(int(x) for x in s["check_seeds"]),
                    problem=dict(s["problem"]) if kind == "bk" else {}, budget_s=float(s["budget_s"]),
                    warmup_s=float(s["warmup_s"]), rel_ci=float(s["rel_ci"]), min_reps=int(s["min_reps"]),
                    max_reps=int(s["max_reps"]), min_reps_long=int(s["min_reps_long"]),
                    timeout_s=float(s["timeout_s"]), memory=bool(s["memory"]), energy=energy, skip_reason=reason,
                ))
    return out


# -- loading ---------------------------------------------------------------------------------------------------
def suites_dir() -> Path:
    """The suite files: ``bkbench/suite_files`` of an installed package (pyproject maps the repository's
    ``suites/`` there), else the ``suites/`` folder of this source checkout."""
    package = Path(__file__).resolve().parents[1]  # <...>/bkbench/harness/suites.py -> <...>/bkbench
    installed = package / "suite_files"
    return installed if installed.is_dir() else package.parent / "suites"


def parse_suite(text: str, name: str | None = None, path: Path | None = None) -> Suite:
    """Parse a suite from TOML text (ValueError naming the problem when it is malformed)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"suite {name or path}: not valid TOML: {exc}") from None
    sname = data.get("name") or name
    if not sname:
        raise ValueError(f"suite {path}: needs a name = \"...\"")
    unknown_top = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown_top:
        raise ValueError(f"suite {sname!r}: unknown top-level key(s) {unknown_top}; a suite has {list(TOP_LEVEL_KEYS)} "
                         "(per-group axes and settings go in a [[group]], suite-wide settings in [settings])")
    groups = data.get("group")
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"suite {sname!r}: needs at least one [[group]]")
    settings = dict(data.get("settings", {}))
    device_settings = {dev: settings.pop(dev) for dev in ("cpu", "cuda") if isinstance(settings.get(dev), dict)}
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"suite {sname!r}: unknown settings {sorted(unknown)}; known: {sorted(SETTINGS)}")
    for g in groups:
        bad = set(g) - set(AXES) - set(SETTINGS) - {"name", "implementations", "exclude", "caps", "cpu", "cuda",
                                                     "description", "shapes"}
        if bad:
            raise ValueError(f"suite {sname!r}, group {g.get('name')!r}: unknown keys {sorted(bad)}")
    caps = {k: dict(v) for k, v in data.get("caps", {}).items()}
    for g in groups:
        for impl, c in g.get("caps", {}).items():
            _check_caps(f"suite {sname!r}, group {g.get('name')!r}: caps.{impl}", c)
        for dev in ("cpu", "cuda"):
            for impl, c in g.get(dev, {}).get("caps", {}).items():
                _check_caps(f"suite {sname!r}, group {g.get('name')!r}: {dev}.caps.{impl}", c)
    for impl, c in caps.items():
        _check_caps(f"suite {sname!r}: caps.{impl}", c)
    return Suite(name=str(sname), description=str(data.get("description", "")), path=path, settings=settings,
                 caps=caps, groups=list(groups), device_settings=device_settings)


def _check_caps(where: str, caps: dict[str, Any]) -> None:
    for key, value in caps.items():
        if key in ("cpu", "cuda") and isinstance(value, dict):
            _check_caps(f"{where}.{key}", value)
        elif key not in CAP_KEYS and key not in SETTINGS:
            raise ValueError(f"{where}: unknown key {key!r}; caps take {CAP_KEYS} and any setting {sorted(SETTINGS)}")
        elif key == "modes" and (not isinstance(value, list) or not value or any(m not in MODES for m in value)):
            raise ValueError(f"{where}: modes must be a non-empty list of {MODES}, e.g. modes = ['fwd']; "
                             f"got {value!r}")


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (``suites/<name>.toml``) or by path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise ValueError(f"suite: file {p} does not exist")
        return parse_suite(p.read_text(), p.stem, p)
    f = suites_dir() / f"{name_or_path}.toml"
    if not f.exists():
        known = ", ".join(s.name for s in list_suites()) or "(none)"
        raise ValueError(f"suite: no suite named {name_or_path!r} (known: {known}); or pass a path to a .toml file")
    return parse_suite(f.read_text(), f.stem, f)


def list_suites() -> list[Suite]:
    """Every suite in ``suites/``, sorted by name."""
    return [parse_suite(f.read_text(), f.stem, f) for f in sorted(suites_dir().glob("*.toml"))]


def _case_hash(case_id: str) -> str:
    return hashlib.sha256(case_id.encode()).hexdigest()


def shard(cases: list[CaseSpec], spec: str | None) -> list[CaseSpec]:
    """Cases of shard ``"i/n"`` (1-based), in plan order. The plan is dealt round-robin in the order of a hash
    of the case ids, so the n shards partition it, differ in size by at most one case, and mix slow and fast
    implementations. Keep the suite file unchanged between the shards of one sweep."""
    if not spec:
        return cases
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"shard: {spec!r} is not of the form i/n (e.g. 1/2)") from None
    if not 1 <= i <= n:
        raise ValueError(f"shard: need 1 <= i <= n, got {spec!r}")
    order = sorted(range(len(cases)), key=lambda j: _case_hash(cases[j].case_id))
    mine = set(order[i - 1 :: n])
    return [c for j, c in enumerate(cases) if j in mine]


def estimate_seconds(cases: Iterable[CaseSpec]) -> float:
    """A rough upper-bound planning estimate: per case the time budget, warm-up, energy windows and a
    fixed overhead (check, compile). Used only for the progress header, never stored."""
    total = 0.0
    for c in cases:
        if c.skip_reason:
            continue
        total += c.budget_s + c.warmup_s + 0.5
        if c.energy:
            total += c.energy["trials"] * c.energy["window_s"] + c.energy["idle_s"] + c.energy["warmup_s"] + 1
    return total


def with_overrides(cases: list[CaseSpec], **changes: Any) -> list[CaseSpec]:
    """The same cases with some settings changed (e.g. timeout_s from the command line)."""
    return [replace(c, **changes) for c in cases]


__all__ = ["CaseSpec", "Suite", "default_device", "estimate_seconds", "list_suites", "load_suite",
           "parse_suite", "shard", "suites_dir", "with_overrides"]
