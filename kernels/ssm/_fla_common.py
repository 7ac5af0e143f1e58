"""Availability of fla-core's Triton kernels and the cases fla itself refuses (shared by the ssm_fla_* modules;
registers nothing)."""

from __future__ import annotations

import importlib.util
import re

import torch

NOT_INSTALLED = "fla-core not installed (pip install fla-core==0.6.0)"
NEEDS_CUDA = (
    "needs CUDA: fla-core's Triton kernels autotune through an active GPU driver and do not run under "
    "TRITON_INTERPRET on the CPU"
)
HOPPER_GATED_BWD = (
    "fla-core refuses the backward of {op} (gated chunk_bwd_dqkwg) on Hopper with 3.4.0 <= Triton < 3.7.1 "
    "(here {triton}): 'incorrect results', fla issue #640; needs Triton >= 3.7.1 or tilelang"
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


def version_tuple(version: str) -> tuple[int, ...]:
    """``"3.6.0"`` / ``"3.7.1+git123"`` / ``"3.4.0rc1"`` -> (3, 6, 0) / (3, 7, 1) / (3, 4, 0): the leading numbers."""
    nums = []
    for part in version.split("+")[0].split(".")[:3]:
        m = re.match(r"\d+", part)
        if not m:
            break
        nums.append(int(m.group()))
    return tuple(nums)


def gated_bwd_refused(capability_major: int, device_name: str, triton_version: str, has_tilelang: bool) -> bool:
    """fla-core 0.6.0's own guard in ``fla.ops.common.chunk_o.chunk_bwd_dqkwg`` (with a gate g): it raises on an
    NVIDIA Hopper GPU (compute capability 9.x, or a name starting "NVIDIA H") when 3.4.0 <= Triton < 3.7.1,
    unless its tilelang backend takes the call (tilelang installed)."""
    hopper = capability_major == 9 or device_name.startswith("NVIDIA H")
    return hopper and (3, 4, 0) <= version_tuple(triton_version) < (3, 7, 1) and not has_tilelang


def hopper_gated_bwd_reason(op: str):
    """A ``supports(case)`` rule: declines forward + backward with fla's reason where fla's guard would raise,
    so the harness records a skip with the reason instead of compiling for minutes and then crashing."""

    def supports(case: object) -> str | None:
        if getattr(case, "mode", "fwd") != "fwd+bwd" or getattr(case, "device", "cpu") != "cuda":
            return None
        if not torch.cuda.is_available():
            return None
        import triton

        major = torch.cuda.get_device_capability()[0]
        name = torch.cuda.get_device_name()
        if gated_bwd_refused(major, name, triton.__version__, importlib.util.find_spec("tilelang") is not None):
            return HOPPER_GATED_BWD.format(op=op, triton=triton.__version__)
        return None

    return supports
