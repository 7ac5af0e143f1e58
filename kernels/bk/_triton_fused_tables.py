"""Tuned launch configurations of ``triton_fused``: which table applies on this GPU, and the lookup per call.

A table (``kernels/bk/data/triton_fused_<gpu>.json``) holds, per (input dtype, coupling kind, shape bucket), the
fastest forward and backward configs measured on one GPU, and names that GPU by more than its marketing name:
``{"name", "sms", "memory_gib", "cc"}``. On another GPU the lookup uses, in order: the user cache (entries that
``bkbench tune`` or opt-in first-use tuning measured on this exact GPU), the packaged table of this exact GPU
(same name, SM count and memory to 4 GiB), the packaged table of the nearest known GPU (same compute capability,
then closest SM count and memory), else the built-in defaults. :func:`explain` says which applied.

Tuning on first use is opt-in: ``bkbench.harness.first_use_tuning.enable(budget_s)`` installs a tuner here
(:func:`set_first_use_tuner`; this module does not import the tuner). Then the first lookup of a (GPU, dtype,
coupling, bucket) whose configs would come from another GPU's table or from the defaults calls it once per process;
it measures within its time budget, stores the winner in the user cache, and the lookup reads that entry. Without
a tuner, the first such lookup on a GPU with no table of its own gives one :class:`UntunedGpuWarning` that says
how to tune.

Key of an entry: ``dtype|coupling|bucket`` inside a table; ``<gpu id>|dtype|coupling|bucket`` in the user cache.
The bucket is ``N<2^ceil(log2 N)>_E<4^ceil(log4(B*N))>``: chain length decides the tile structure, total work the
occupancy.
"""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bkbench.kernels.bk._triton_fused_config import BwdConfig, FusedConfig

DATA_DIR = Path(__file__).resolve().parent / "data"
CACHE_NAME = "tuned_triton_fused.json"
SCHEMA = 2


@dataclass(frozen=True)
class GpuId:
    """A GPU as the tables name it: marketing name, SM count, memory (GiB, rounded), compute capability."""

    name: str
    sms: int
    memory_gib: int
    cc: str

    def label(self) -> str:
        if self == INTERPRETER:
            return self.name
        return f"{self.name} [{self.sms} SMs, {self.memory_gib} GiB, sm_{self.cc.replace('.', '')}]"

    def same_gpu(self, other: GpuId) -> bool:
        return (self.name == other.name and self.sms == other.sms and self.cc == other.cc
                and abs(self.memory_gib - other.memory_gib) <= 4)

    def distance(self, other: GpuId) -> float:
        """How far ``other``'s tuning is from this GPU: a different compute capability first, then SM count and
        memory size (log ratio)."""
        return ((0 if self.cc == other.cc else 1000) + abs(self.sms - other.sms)
                + 10 * abs(math.log2(max(self.memory_gib, 1) / max(other.memory_gib, 1))))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GpuId:
        return cls(str(d["name"]), int(d["sms"]), int(d["memory_gib"]), str(d["cc"]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sms": self.sms, "memory_gib": self.memory_gib, "cc": self.cc}


INTERPRETER = GpuId("cpu-interpreter", 0, 0, "0.0")


@functools.lru_cache(maxsize=16)
def gpu_id(index: int | None = None) -> GpuId:
    """This process's CUDA device ``index`` (default: current) as a :class:`GpuId`; the interpreter off CUDA."""
    if not torch.cuda.is_available():
        return INTERPRETER
    p = torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)
    return GpuId(p.name, int(p.multi_processor_count), round(p.total_memory / 2**30), f"{p.major}.{p.minor}")


def bucket(batch: int, n: int) -> str:
    """Shape bucket of a (batch, n) problem, e.g. ``N4096_E16777216``."""
    e = max(1, batch * n)
    eb = 1 << (2 * math.ceil(math.log2(e) / 2)) if e > 1 else 1
    return f"N{1 << max(0, (max(1, n) - 1).bit_length())}_E{eb}"


def entry_key(dtype: torch.dtype, scalar_coupling: bool, batch: int, n: int) -> str:
    return f"{str(dtype).replace('torch.', '')}|{'scalar' if scalar_coupling else 'k'}|{bucket(batch, n)}"


def cache_path() -> Path:
    """The user cache (``BKBENCH_CACHE_DIR`` overrides the platformdirs location)."""
    env = os.environ.get("BKBENCH_CACHE_DIR")
    if env:
        return Path(env) / CACHE_NAME
    try:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("bkbench"))
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        base = Path.home() / ".cache" / "bkbench"
    return base / CACHE_NAME


def read_json(path: Path) -> dict[str, Any]:
    """A table or cache file, or {} when missing, unreadable or of another schema."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else {}


@functools.lru_cache(maxsize=1)
def packaged_tables() -> tuple[tuple[GpuId, str, dict[str, Any]], ...]:
    """Every table shipped in ``kernels/bk/data``: (GPU, file name, entries)."""
    out = []
    for path in sorted(DATA_DIR.glob("triton_fused_*.json")):
        data = read_json(path)
        if data.get("gpu"):
            out.append((GpuId.from_dict(data["gpu"]), path.name, data.get("entries", {})))
    return tuple(out)


def table_for(gpu: GpuId) -> tuple[str, str, dict[str, Any]] | None:
    """(how it matched: "exact" or "nearest", file name, entries) of the packaged table for ``gpu``, or None."""
    tables = packaged_tables()
    for g, name, entries in tables:
        if g.same_gpu(gpu):
            return "exact", name, entries
    if gpu == INTERPRETER or not tables:
        return None
    g, name, entries = min(tables, key=lambda t: gpu.distance(t[0]))
    return f"nearest ({g.label()})", name, entries


def user_cache() -> dict[str, Any]:
    return read_json(cache_path()).get("entries", {})


@dataclass(frozen=True)
class Lookup:
    """The configs one problem runs with, and where they came from (``origin``: "user cache", "exact" (this
    GPU's packaged table), "nearest" (another GPU's table) or "defaults")."""

    fwd: FusedConfig
    bwd: BwdConfig
    source: str
    key: str
    origin: str = "defaults"

    @property
    def tuned_here(self) -> bool:
        """Whether the configs were measured on this GPU (the user cache or this GPU's own table)."""
        return self.origin in ("user cache", "exact")


class UntunedGpuWarning(UserWarning):
    """A CUDA GPU without a packaged table of its own runs another GPU's configs (or the defaults)."""


# (device, dtype, scalar coupling, batch, n) -> None; measures and stores an entry in the user cache
FirstUseTuner = Callable[[torch.device, torch.dtype, bool, int, int], None]

_MEMO: dict[tuple[Any, ...], Lookup] = {}
_FIRST_USE: list[FirstUseTuner] = []  # at most one: the installed tuner
_TRIED: set[tuple[str, str]] = set()  # (GPU label, entry key) tuned (or tried) on first use in this process
_WARNED: set[str] = set()  # GPU labels warned about in this process


def clear_memo() -> None:
    _MEMO.clear()
    packaged_tables.cache_clear()


def set_first_use_tuner(tuner: FirstUseTuner | None) -> None:
    """Install (or with None remove) the tuner that :func:`lookup` calls on first use; clears the lookup memo."""
    _FIRST_USE.clear()
    if tuner is not None:
        _FIRST_USE.append(tuner)
    _TRIED.clear()
    clear_memo()


def first_use_tuner() -> FirstUseTuner | None:
    return _FIRST_USE[0] if _FIRST_USE else None


def lookup(device: torch.device, dtype: torch.dtype, scalar_coupling: bool, batch: int, n: int) -> Lookup:
    """The configs for a (batch, n) problem of ``dtype`` inputs on ``device`` (memoised: a call reads no file).

    On a memo miss on CUDA whose configs were not measured on this GPU: with a first-use tuner installed, tune
    once (not while a CUDA graph is being captured); without one, warn once per GPU that has no table of its own.
    """
    memo_key = (device, dtype, scalar_coupling, batch, n)
    hit = _MEMO.get(memo_key)
    if hit is not None:
        return hit
    hit = explain(device, dtype, scalar_coupling, batch, n)
    if device.type == "cuda" and not hit.tuned_here:
        gpu = gpu_id(device.index).label()
        tuner = first_use_tuner()
        if tuner is not None:
            if capturing():
                return hit  # not memoised: an eager call later tunes
            if (gpu, hit.key) not in _TRIED:
                _TRIED.add((gpu, hit.key))
                try:
                    tuner(device, dtype, scalar_coupling, batch, n)
                except Exception as exc:  # the call goes on with the configs it had
                    warnings.warn(f"triton_fused: the first-use tuner failed on {hit.key} ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}); the call runs {hit.source}", UntunedGpuWarning, stacklevel=2)
                hit = explain(device, dtype, scalar_coupling, batch, n)
        elif (table_for(gpu_id(device.index)) or ("",))[0] != "exact":
            _warn_untuned(gpu, hit)  # a GPU with a table of its own runs the defaults only where it measured no bucket
    _MEMO[memo_key] = hit
    return hit


def capturing() -> bool:
    """Whether the current CUDA stream is capturing a graph (no tuning then: it synchronises)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _warn_untuned(gpu: str, hit: Lookup) -> None:
    if gpu in _WARNED:
        return
    _WARNED.add(gpu)
    warnings.warn(
        f"triton_fused has no tuned table for {gpu}; it runs {hit.source}. To tune for this GPU run "
        "`bkbench tune` once (results are cached), or call bkbench.harness.first_use_tuning.enable(budget_s=60) "
        "before the first call to tune each new shape bucket on first use.",
        UntunedGpuWarning, stacklevel=3)


def explain(device: torch.device, dtype: torch.dtype, scalar_coupling: bool, batch: int, n: int) -> Lookup:
    """Like :func:`lookup`, read afresh (the user cache, then the packaged tables, then the defaults)."""
    return explain_for(gpu_id(device.index) if device.type == "cuda" else INTERPRETER, dtype, scalar_coupling, batch, n)


def known_gpu(name: str) -> GpuId | None:
    """The packaged tables' GPU of this marketing name (for explaining a pick on another machine), or None."""
    return next((g for g, _, _ in packaged_tables() if g.name == name), None)


def explain_for(gpu: GpuId, dtype: torch.dtype, scalar_coupling: bool, batch: int, n: int) -> Lookup:
    """The configs a problem would run with on ``gpu``, and where they come from."""
    k = entry_key(dtype, scalar_coupling, batch, n)
    entry = user_cache().get(f"{gpu.label()}|{k}")
    if entry:
        origin, source = "user cache", f"user cache {cache_path()} ({_how_tuned(entry)})"
    else:
        table = table_for(gpu)
        if table and k in table[2]:
            how, name, entries = table
            entry = entries[k]
            origin = "exact" if how == "exact" else "nearest"
            source = f"packaged table {name}, {how}"
    if not entry:
        return Lookup(FusedConfig(), BwdConfig(), "built-in defaults (no tuned entry for this GPU and bucket)", k)
    fwd = FusedConfig.from_dict(entry["config"]) if "config" in entry else FusedConfig()
    bwd = BwdConfig.from_dict(entry["bwd_config"]) if "bwd_config" in entry else BwdConfig()
    return Lookup(fwd, bwd, source, k, origin)


def _how_tuned(entry: dict[str, Any]) -> str:
    """"tuned on this GPU" plus, for a first-use entry, how much of the space its budget searched."""
    if entry.get("source") != "first use":
        return "tuned on this GPU"
    return (f"tuned on this GPU on first use: {entry.get('searched', '?')} of {entry.get('space', '?')} forward "
            f"configs in its {entry.get('budget_s', '?')} s budget; `bkbench tune` searches the rest")
