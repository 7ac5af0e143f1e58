"""Build a packaged ``triton_fused`` table (``kernels/bk/data/triton_fused_<gpu>.json``) from measured tuner entries.

``bkbench tune --write-table PATH`` calls :func:`write_table` after its search: the entries of this GPU in the
user cache (each one a tuner winner, checked against float64, with its time and the default's time) become the
table's entries, merged into PATH when PATH already holds a table of the same GPU (so several device calls, each
tuning a few buckets, add up to one table). Nothing is estimated: an entry is copied with the measurement it
came from, and the table names its GPU by name, SM count, memory and compute capability.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from bkbench.kernels.bk import _triton_fused_tables as tables

# what a table entry keeps of a tuner entry (the rest, e.g. the tuner's own timestamps, goes too: all is provenance)
REQUIRED = ("config", "ms")


def entries_of(gpu: tables.GpuId, cache: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The user-cache entries tuned on ``gpu``, keyed as inside a table (``dtype|coupling|bucket``)."""
    prefix = f"{gpu.label()}|"
    out = {}
    for key, entry in cache.items():
        if key.startswith(prefix) and all(f in entry for f in REQUIRED):
            out[key[len(prefix):]] = entry
    return out


def write_table(path: Path, gpu: tables.GpuId, entries: dict[str, dict[str, Any]], note: str) -> dict[str, Any]:
    """Merge ``entries`` into the table at ``path`` (created if missing; a newer entry replaces an older one of
    the same key) and write it atomically. Refuses a table of another GPU and an empty result. Returns the table."""
    if gpu == tables.INTERPRETER:
        raise ValueError("--write-table: needs a CUDA GPU (the interpreter has no table)")
    old = tables.read_json(path) if path.exists() else {}
    if path.exists() and not old:
        raise ValueError(f"--write-table: {path} exists but is not a schema-{tables.SCHEMA} table; choose another path")
    if old and not tables.GpuId.from_dict(old["gpu"]).same_gpu(gpu):
        raise ValueError(f"--write-table: {path} is the table of {tables.GpuId.from_dict(old['gpu']).label()}, "
                         f"not of this GPU ({gpu.label()}); write to another path")
    merged = {**old.get("entries", {}), **entries}
    if not merged:
        raise ValueError("--write-table: no tuned entry of this GPU to write (run the search first)")
    notes = [n for n in (old.get("note"), note) if n]
    table = {"schema": tables.SCHEMA, "gpu": gpu.to_dict(), "note": " | ".join(dict.fromkeys(notes)),
             "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "entries": dict(sorted(merged.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return table
