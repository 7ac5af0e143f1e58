"""The environment header (provenance) stored with every result: GPU, driver, CUDA, torch, triton, python,
git sha, host, date, and — for measurement runs — the measured device copy bandwidth."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch


def git_sha(path: str | Path | None = None) -> str:
    """The commit of the checkout bkbench runs from (``-dirty`` when it has local changes), or "unknown".

    ``BKBENCH_GIT_SHA``, when set, wins: a copied tree (e.g. a GPU machine's copy of the working tree) can carry
    a ``.git`` that does not match the files, and only the caller knows what was copied."""
    override = os.environ.get("BKBENCH_GIT_SHA")
    if override and path is None:
        return override
    where = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
        "git_sha": git_sha(),
        "torch_threads": torch.get_num_threads(),
    }
    env.update(_gpu_info())
    if measure_bandwidth and torch.cuda.is_available():
        from bkbench.timing import copy_bandwidth

        env["copy_bandwidth_gbs"] = copy_bandwidth()
    return env
