"""Test configuration. On a machine without a GPU, Triton kernels run in the CPU interpreter: the tests opt in
(TRITON_INTERPRET=1 before any kernel module is imported; the library itself never sets it)."""

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request):
    return request.param


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty user cache of tuned configs (``BKBENCH_CACHE_DIR``), with the lookup memo cleared around the test."""
    from bkbench.kernels.bk import _triton_fused_tables as tables

    monkeypatch.setenv("BKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    tables.clear_memo()
    yield tmp_path / "cache"
    tables.clear_memo()
