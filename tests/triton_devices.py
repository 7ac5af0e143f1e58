"""Where the tests run Triton kernels.

On a machine without a GPU, ``conftest.py`` turns the Triton interpreter on and the kernels run on CPU tensors. On a
GPU machine the interpreter stays off (it would interpret the CUDA launches too, and compile-only failures would go
unseen), so a Triton kernel cannot take CPU tensors there: the tests run those cases on CUDA instead.
"""

from __future__ import annotations

import pytest
import torch

from bkbench.kernels.bk._cplx_triton import interpreting

TRITON_HOST = "cpu" if interpreting() else "cuda"  # where a single-device test runs a Triton kernel
TRITON_DEVICES = sorted({TRITON_HOST} | ({"cuda"} if torch.cuda.is_available() else set()))
TRITON_IMPLS = ("triton_fused", "lut_green_triton", "lns_triton")


def skip_triton_on_cpu(impl: str, device: str) -> None:
    """Skip a CPU case of a Triton implementation when the interpreter is off (a GPU machine: its CUDA case runs)."""
    if impl in TRITON_IMPLS and device == "cpu" and not interpreting():
        pytest.skip(f"{impl} on CPU tensors needs TRITON_INTERPRET=1 (off on a GPU machine; the cuda case runs)")
