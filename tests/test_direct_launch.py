"""The bound backward's direct launch (``DirectLaunch``) passes a compiled kernel's launch function exactly what
Triton's own launcher would, and hands a call back to ``launch()`` when it must.

CUDA is not needed: the compiled kernel is a stand-in whose ``run`` is a real ``triton`` ``CudaLauncher`` object
(made without compiling anything) recording what reaches its ``launch`` function; the CUDA queries the check reads
are patched."""

from __future__ import annotations

import pytest
import torch

from bkbench.kernels.bk._triton_fused_bound import DirectLaunch
from bkbench.kernels.bk._triton_fused_launch import Stream

CudaLauncher = pytest.importorskip("triton.backends.nvidia.driver").CudaLauncher


class _Compiled:
    """What ``launch()`` keeps per key: a compiled kernel with ``function``, ``packed_metadata`` and ``run``."""

    def __init__(self, calls: list[tuple]) -> None:
        run = object.__new__(CudaLauncher)  # no compilation: only the attributes __call__ reads
        run.launch = lambda *args: calls.append(args)
        run.num_ctas, run.global_scratch_size, run.profile_scratch_size = 1, 0, 0
        run.global_scratch_align = run.profile_scratch_align = 1
        run.launch_cooperative_grid, run.launch_pdl = False, False
        self.run, self.function, self.packed_metadata = run, 0xF00D, ("packed", 3)


@pytest.fixture
def on_cuda_device_0(monkeypatch):
    state = {"capturing": False, "device": 0}
    monkeypatch.setattr(torch._C, "_cuda_isCurrentStreamCapturing", lambda: state["capturing"], raising=False)
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: state["device"], raising=False)
    return state


def _args():
    a = torch.zeros(64)
    out = torch.zeros(64)
    return (a, 64, 1.5, out, 8, 0.25)


def test_the_direct_launch_passes_what_the_launcher_would(on_cuda_device_0):
    calls: list[tuple] = []
    compiled = _Compiled(calls)
    consts = (7, 0.5)
    args = _args()
    where = Stream(torch.device("cuda", 0), 1234, False)
    assert DirectLaunch((compiled, consts))(5, where, 0, args)
    ptrs = [v.data_ptr() if isinstance(v, torch.Tensor) else v for v in args]
    # what launch() does on a hit (run_compiled): the launcher called with the pointers, then its trailing constants
    compiled.run(5, 1, 1, 1234, compiled.function, compiled.packed_metadata, None, None, None, *ptrs, *consts)
    assert len(calls) == 2 and calls[0] == calls[1]
    assert calls[0][3] == 1234 and calls[0][-2:] == consts


def test_a_launcher_of_another_kind_is_called_through_run(on_cuda_device_0):
    seen: list[tuple] = []

    class OtherLauncher:
        def __call__(self, *args):
            seen.append(args)

    compiled = _Compiled([])
    compiled.run = OtherLauncher()
    args = _args()
    assert DirectLaunch((compiled, ()))(3, Stream(torch.device("cuda", 0), 9, False), 0, args)
    assert seen and seen[0][:5] == (3, 1, 1, 9, compiled.function) and seen[0][5] == compiled.packed_metadata


@pytest.mark.parametrize("why", ["capturing", "other device", "unaligned pointer"])
def test_the_call_is_handed_back(on_cuda_device_0, why):
    calls: list[tuple] = []
    direct = DirectLaunch((_Compiled(calls), ()))
    args = _args()
    if why == "capturing":
        on_cuda_device_0["capturing"] = True
    elif why == "other device":
        on_cuda_device_0["device"] = 1
    else:
        args = (torch.zeros(65)[1:], *args[1:])  # 4 bytes past an aligned allocation
    assert not direct(3, Stream(torch.device("cuda", 0), 9, False), 0, args)
    assert calls == []
