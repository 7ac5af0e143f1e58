"""Availability of fla-core's Triton kernels (shared by the ssm_fla_* modules; registers nothing)."""

from __future__ import annotations

import importlib.util

import torch

NOT_INSTALLED = "fla-core not installed (pip install fla-core==0.6.0)"
NEEDS_CUDA = (
    "needs CUDA: fla-core's Triton kernels autotune through an active GPU driver and do not run under "
    "TRITON_INTERPRET on the CPU"
)


def fla_available() -> str | None:
    """None when fla-core imports and a CUDA device is present, else the reason."""
    if importlib.util.find_spec("fla") is None:
        return NOT_INSTALLED
    if not torch.cuda.is_available():
        return NEEDS_CUDA
    try:
        import fla.ops  # noqa: F401
    except Exception as exc:
        return f"fla-core import failed: {type(exc).__name__}: {exc}"
    return None
