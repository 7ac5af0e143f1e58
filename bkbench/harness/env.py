"""The environment header (provenance) stored with every result: GPU, driver, CUDA, torch, triton, python,
git sha, host, date, and — for measurement runs — the measured device copy bandwidth."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

UNTRACKED_HASH_MAX_BYTES = 16 * 1024 * 1024  # larger untracked files enter the diff hash by name, size and mtime


def _git(where: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=where, capture_output=True, timeout=10, check=True).stdout


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """The checkout bkbench runs from: ``sha`` (HEAD), ``dirty`` (tracked changes, staged or not, *or untracked
    files* -- a new kernel not yet committed makes the tree dirty), and ``diff_hash``: the first 16 hex digits of
    a SHA-256 over ``git diff HEAD --binary`` and every untracked, non-ignored file (path and content), so two
    runs from different uncommitted states are told apart; None when clean. ``{"sha": "unknown"}`` outside git."""
    where = Path(path) if path else Path(__file__).resolve().parents[2]
    try:
        sha = _git(where, "rev-parse", "HEAD").decode().strip()
        status = _git(where, "status", "--porcelain", "--untracked-files=all").decode().strip()
        if not status:
            return {"sha": sha, "dirty": False, "diff_hash": None}
        digest = hashlib.sha256(_git(where, "diff", "HEAD", "--binary"))
        top = Path(_git(where, "rev-parse", "--show-toplevel").decode().strip())
        for name in sorted(n for n in _git(top, "ls-files", "--others", "--exclude-standard", "-z").decode(
                errors="surrogateescape").split("\0") if n):
            f = top / name
            digest.update(b"\0untracked\0" + name.encode(errors="surrogateescape") + b"\0")
            try:
                st = f.stat()
                digest.update(f.read_bytes() if st.st_size <= UNTRACKED_HASH_MAX_BYTES
                              else f"{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                digest.update(b"unreadable")
        return {"sha": sha, "dirty": True, "diff_hash": digest.hexdigest()[:16]}
    except (OSError, subprocess.SubprocessError):
        return {"sha": "unknown"}


def git_sha(path: str | Path | None = None) -> str:
    """The commit of the checkout bkbench runs from, or "unknown". With local changes -- tracked or untracked
    files -- ``<sha>-dirty.<diff hash>`` (:func:`git_state`): a run with an uncommitted kernel is never stamped
    as a clean commit.

    ``BKBENCH_GIT_SHA``, when set, wins: a copied tree (e.g. a GPU machine's copy of the working tree) can carry
    a ``.git`` that does not match the files, and only the caller knows what was copied."""
    override = os.environ.get("BKBENCH_GIT_SHA")
    if override and path is None:
        return override
    return _sha_text(git_state(path))


def _sha_text(state: dict[str, Any]) -> str:
    return f"{state['sha']}-dirty.{state['diff_hash']}" if state.get("dirty") else state["sha"]


def _triton_version() -> str | None:
    # Read the installed version without importing triton: importing it here could happen before
    # TRITON_INTERPRET is decided (bkbench/__init__.py) and leave Triton half-interpreted.
    import importlib.metadata

    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu_info() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"gpu": None}
    idx = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(idx)
    info: dict[str, Any] = {
        "gpu": props.name,
        "gpu_count": torch.cuda.device_count(),
        "sm_count": props.multi_processor_count,
        "gpu_memory_bytes": props.total_memory,
        "l2_bytes": getattr(props, "L2_cache_size", None),
        "cuda": torch.version.cuda,
        "capability": f"{props.major}.{props.minor}",
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(idx)
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        info["sm_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
        info["mem_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)
        info["power_limit_w"] = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
    except Exception as exc:  # NVML missing or refused: say so, invent nothing
        info["nvml"] = f"unavailable: {type(exc).__name__}: {exc}"
    return info


def _git_fields() -> dict[str, Any]:
    override = os.environ.get("BKBENCH_GIT_SHA")
    if override:
        return {"git_sha": override, "git_dirty": None}
    state = git_state()
    return {"git_sha": _sha_text(state), "git_dirty": state.get("dirty")}


def environment(measure_bandwidth: bool = False) -> dict[str, Any]:
    """Provenance header. ``measure_bandwidth`` adds the measured device-to-device copy bandwidth (GPU)."""
    env: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _triton_version(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
        **_git_fields(),
        "torch_threads": torch.get_num_threads(),
    }
    env.update(_gpu_info())
    if measure_bandwidth and torch.cuda.is_available():
        from bkbench.harness.timing import copy_bandwidth

        env["copy_bandwidth_gbs"] = copy_bandwidth()
    return env
