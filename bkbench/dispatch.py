"""``impl="auto"``: which implementation :func:`bkbench.bk_core` runs.

Per (device, GPU, compute dtype, shape bucket) the dispatcher picks the fastest *exact* implementation that
is usable here and passed correctness, from measured data; with no data it falls back to a fixed preference
order. When an input requires grad only differentiable implementations are candidates. Every pick carries its
reason (``bkbench explain-auto`` prints it). Sources, in order:

1. a results store, only when the user names one (``$BKBENCH_DB``, or ``explain(store_path=...)``; see
   :mod:`bkbench.store`): forward rows (``mode == "fwd"``) of this device type, GPU, dtype and shape bucket. An
   implementation with an ``incorrect`` row in the bucket is excluded (it failed the correctness check there);
   among the others with ``ok`` rows the lowest median time of the latest run wins. The library never reads a
   database it was not told about (the same call picks the same way wherever the program runs);
2. the measurements shipped with the package (``bkbench/data/auto_*.json``) for this GPU, or the nearest known
   GPU (GPU identities of the tuned-table provider, :func:`tables`);
3. the fixed order of the registry records' ``fallback_rank`` (``Registry.fallback_order``: first usable exact
   implementation that takes the dtype).

The shape bucket is :func:`bucket` (the tuned tables' bucket: chain length rounded up to a power of two, total
elements B*N to a power of four). Picks are memoised per key (and store file modification time).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bkbench.registry import DEVICES, Implementation, Registry, default_registry
from bkbench.store import Store

DATA_DIR = Path(__file__).resolve().parent / "data"


class _DefaultFallbackOrder(Mapping[str, tuple[str, ...]]):
    """``FALLBACK_ORDER[device]``: the default registry's :meth:`~bkbench.registry.Registry.fallback_order`."""

    def __getitem__(self, device: str) -> tuple[str, ...]:
        if device not in DEVICES:
            raise KeyError(device)
        return default_registry().fallback_order(device)

    def __iter__(self) -> Iterator[str]:
        return iter(DEVICES)

    def __len__(self) -> int:
        return len(DEVICES)


FALLBACK_ORDER: Mapping[str, tuple[str, ...]] = _DefaultFallbackOrder()
_TABLES: dict[int, Any] = {}


def tables() -> Any:
    """The tuned-table provider whose shape buckets and GPU identities ``impl="auto"`` uses: the ``tuner`` of the
    first BK-core record of the default registry (by name) that declares one."""
    reg = default_registry()
    found = _TABLES.get(id(reg))
    if found is None:
        rec = next((r for r in reg.implementations("bk") if r.tuner is not None), None)
        if rec is None:
            raise ValueError("impl: no registered BK-core implementation declares a tuner (the shape buckets of "
                             "impl='auto')")
        found = _TABLES[id(reg)] = rec.load_tuner()
    return found


def bucket(batch: int, n: int) -> str:
    """Shape bucket of a (batch, n) problem (the tuned tables' bucket)."""
    return tables().bucket(batch, n)


@dataclass(frozen=True)
class Choice:
    impl: str
    reason: str


@dataclass
class Evidence:
    """What :func:`explain` found for one key: candidates with their status and times, and the pick."""

    key: str
    gpu: str | None
    sources: list[str] = field(default_factory=list)
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    choice: Choice | None = None


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _takes(rec: Implementation, dtype: torch.dtype) -> bool:
    """True when ``rec`` accepts compute dtype ``dtype`` (float32 or float64; bk_core upcasts half types)."""
    return dtype in rec.dtypes


def _usable(rec: Implementation, device: str, dtype: torch.dtype, needs_grad: bool = False) -> str | None:
    """None when ``rec`` may be picked for (device, dtype, grad), else why not."""
    if rec.kind != "bk":
        return f"a {rec.kind} baseline"
    if not rec.exact:
        return "approximate"
    if needs_grad and not rec.differentiable:
        return "not differentiable (an input requires grad)"
    if device not in rec.devices:
        return f"no {device} support"
    if not _takes(rec, dtype):
        return f"no {_dtype_name(dtype)} support"
    return rec.unavailable_reason()


def _gpu_name(device: str) -> str | None:
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return None


def _store_path() -> Path | None:
    """The results store the user named (``BKBENCH_DB``), or None: the library reads no database by default."""
    env = os.environ.get("BKBENCH_DB", "").strip()
    return Path(env) if env else None


def store_evidence(path: Path, device: str, gpu: str | None, dtype: torch.dtype, batch: int, n: int
                   ) -> dict[str, dict[str, Any]]:
    """Per implementation: {"ms": median of its latest run (ok rows), "incorrect": bool, "run": id} from the
    results store, for forward rows in the same bucket. Read-only; an unreadable store gives {}."""
    if not path.exists():
        return {}
    want = bucket(batch, n)
    out: dict[str, dict[str, Any]] = {}
    for r in Store.bk_forward_rows(path):
        if (r["device"] or "") != device or (r["dtype"] or "") not in (_dtype_name(dtype), ""):
            continue
        if device == "cuda" and gpu and r["gpu"] and r["gpu"] != gpu:
            continue
        if not r["n"] or not r["batch"] or bucket(int(r["batch"]), int(r["n"])) != want:
            continue
        e = out.setdefault(r["impl"], {"ms": None, "run": -1, "incorrect": False, "source": f"store {path}"})
        if r["status"] == "incorrect":
            e["incorrect"] = True
        if r["status"] == "ok" and r["time_median_s"] is not None and int(r["run_id"]) >= e["run"]:
            if int(r["run_id"]) > e["run"]:
                e["samples"] = []
            e["run"] = int(r["run_id"])
            e.setdefault("samples", []).append(float(r["time_median_s"]) * 1e3)
    for e in out.values():
        s = sorted(e.pop("samples", []))
        e["ms"] = s[len(s) // 2] if s else None
    return out


def _packaged_auto(gpu: str | None) -> tuple[str, dict[str, Any]] | None:
    """(file name, data) of the packaged auto measurements for ``gpu`` (this CUDA device when it is the current
    one), or of the nearest known GPU; None off CUDA or when nothing is packaged."""
    if gpu is None:
        return None
    t = tables()
    here = t.gpu_id() if torch.cuda.is_available() and gpu == torch.cuda.get_device_name() else None
    files = []
    for path in sorted(DATA_DIR.glob("auto_*.json")):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        g = data.get("gpu")
        if isinstance(g, dict):
            files.append((t.GpuId.from_dict(g), path.name, data))
    for g, name, data in files:
        if g.name == gpu and (here is None or g.same_gpu(here)):
            return name, data
    if here is None or not files:
        return None
    g, name, data = min(files, key=lambda t: here.distance(t[0]))
    return f"{name} (nearest known GPU: {g.label()})", data


def packaged_evidence(gpu: str | None, dtype: torch.dtype, batch: int, n: int) -> dict[str, dict[str, Any]]:
    found = _packaged_auto(gpu)
    if not found:
        return {}
    name, data = found
    entry = data.get("entries", {}).get(f"{_dtype_name(dtype)}|{bucket(batch, n)}")
    if not entry:
        return {}
    return {impl: {"ms": ms, "incorrect": False, "source": f"packaged {name}"} for impl, ms in entry["ms"].items()}


def explain(device: str, dtype: torch.dtype, batch: int, n: int, registry: Registry,
            store_path: Path | None = None, use_data: bool = True, gpu: str | None = None,
            needs_grad: bool = False) -> Evidence:
    """The full decision for (device, dtype, batch, n): candidates, their data and the pick.

    ``store_path``: a results store to read (default: ``$BKBENCH_DB`` if set, else none). ``gpu`` overrides the
    GPU name (default: the current CUDA device's), e.g. to explain an H100 pick on a machine without that GPU.
    ``needs_grad``: only differentiable implementations are candidates."""
    if device not in DEVICES:
        raise ValueError(f"device: {device!r} is not supported; use 'cpu' or 'cuda'")
    if batch < 1 or n < 1:
        raise ValueError(f"batch, n: need batch >= 1 and n >= 1, got {batch}, {n}")
    gpu = gpu or _gpu_name(device)
    ev = Evidence(f"{device}|{gpu or '-'}|{_dtype_name(dtype)}|{bucket(batch, n)}", gpu)
    for rec in registry.implementations("bk"):
        ev.candidates[rec.name] = {"usable": _usable(rec, device, dtype, needs_grad)}
    data: dict[str, dict[str, Any]] = {}
    if use_data:
        path = store_path or _store_path()
        if path is None:
            ev.sources.append("results store: none named (set BKBENCH_DB to use one)")
        else:
            data = store_evidence(path, device, gpu, dtype, batch, n)
            ev.sources.append(f"results store {path}: {len(data)} implementation(s) measured in this bucket"
                              if path.exists() else f"results store {path}: not found")
        timed = [k for k, v in data.items() if v.get("ms") is not None]
        if len(timed) < 2:
            pk = packaged_evidence(gpu, dtype, batch, n)
            ev.sources.append(f"packaged measurements for {gpu or device}: "
                              + (f"{len(pk)} implementation(s) in this bucket" if pk else "none for this bucket"))
            for k, v in pk.items():
                data.setdefault(k, v)
    for name, v in data.items():
        if name in ev.candidates:
            ev.candidates[name].update(v)
    ranked = sorted(
        (v["ms"], name) for name, v in ev.candidates.items()
        if v.get("usable") is None and not v.get("incorrect") and v.get("ms") is not None
    )
    if len(ranked) >= 2 or (ranked and len([c for c in ev.candidates.values() if c.get("usable") is None]) == 1):
        ms, name = ranked[0]
        others = ", ".join(f"{nm} {t:.4g} ms" for t, nm in ranked[1:])
        src = ev.candidates[name].get("source", "data")
        ev.choice = Choice(name, f"fastest measured exact implementation in bucket {ev.key} ({name} {ms:.4g} ms"
                                 + (f"; {others}" if others else "") + f"; from {src})")
        return ev
    ev.choice = _fallback(device, dtype, registry, needs_grad)
    return ev


def _fallback(device: str, dtype: torch.dtype, registry: Registry, needs_grad: bool = False) -> Choice:
    skipped = []
    order = registry.fallback_order(device)
    for name in order:
        reason = _usable(registry.get(name), device, dtype, needs_grad)
        if reason:
            skipped.append(f"{name}: {reason}")
            continue
        why = f"no measurements for this bucket; fallback order for {device}: first usable of {', '.join(order)}"
        if skipped:
            why += f" (skipped {'; '.join(skipped)})"
        return Choice(name, why)
    why = "; ".join(skipped) or f"no registered implementation has a fallback_rank for {device}"
    raise ValueError(f"impl: no exact implementation is usable on {device} ({why})")


_MEMO: dict[tuple[Any, ...], Choice] = {}


def choose(device: str, dtype: torch.dtype, batch: int, n: int, registry: Registry,
           needs_grad: bool = False) -> Choice:
    """Pick an exact BK-core implementation for (device, dtype, batch, n) (a differentiable one when
    ``needs_grad``); never raises for a known device with a usable implementation."""
    path = _store_path()
    try:
        mtime = path.stat().st_mtime if path is not None and path.exists() else None
    except OSError:
        mtime = None
    key = (device, _dtype_name(dtype), bucket(batch, n), str(path), mtime, id(registry), needs_grad)
    hit = _MEMO.get(key)
    if hit is None:
        hit = explain(device, dtype, batch, n, registry, needs_grad=needs_grad).choice
        assert hit is not None
        _MEMO[key] = hit
    return hit
