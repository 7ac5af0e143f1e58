"""Whether an implementation may keep device buffers between calls (its workspace).

Implementations may keep scratch buffers per device and stream between calls (``triton_fused`` keeps its fold's
flags, counters and scratch so that an eager call allocates nothing but its output). Inside a compiled graph that
must not happen: ``torch.compile(mode="reduce-overhead")`` runs its warm-up steps with every allocation routed to
its CUDA-graph memory pool and then requires each live tensor of that pool to be one of the graph's outputs, so a
buffer kept from the warm-up fails it ("tensor(s) in the cudagraph pool not tracked as outputs"). The
``bkbench::bk_core`` operators' implementations (what compiled graphs call) therefore run inside
:func:`fresh_workspace` whenever :func:`pool_may_adopt` says a graph pool could be taking the allocations, and an
implementation asks :func:`workspace_must_be_fresh` before reusing a buffer.

When a pool can take them: inductor's CUDA-graph trees warm up (and record) on a stream of their own, never on the
device's default stream, and a CUDA-graph capture is seen by the launchers themselves
(``torch.cuda.is_current_stream_capturing()``). So a call on the default stream of its device, or on the CPU, keeps
its buffers as an eager call does; a call on any other CUDA stream allocates them per call (a user's own side
stream pays that too: one allocation and one zero fill, a few microseconds of host time). Measured on the
development CPU with launches stubbed (``bench/op_host_cpu.py``'s model, the two trees run alternately, three runs
each): a compiled 4-block training step took 1474-1484 µs with a fresh workspace in every operator call and
1265-1371 µs with this rule.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

_STATE = threading.local()
_DEFAULT_STREAM: dict[int, int] = {}  # device index -> raw handle of its default stream


def workspace_must_be_fresh() -> bool:
    """True inside :func:`fresh_workspace`: allocate buffers per call and keep none."""
    return getattr(_STATE, "depth", 0) > 0


@contextmanager
def fresh_workspace() -> Iterator[None]:
    """Calls inside allocate their workspace per call (see the module's docstring)."""
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def pool_may_adopt(device: torch.device) -> bool:
    """True when allocations made now on ``device`` may belong to a CUDA-graph pool that rejects kept buffers:
    a CUDA device whose current stream is not its default stream (see the module's docstring)."""
    if device.type != "cuda":
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    default = _DEFAULT_STREAM.get(index)
    if default is None:
        default = _DEFAULT_STREAM[index] = torch.cuda.default_stream(index).cuda_stream
    return torch._C._cuda_getCurrentRawStream(index) != default


_KEEP_WORKSPACE = nullcontext()  # reusable: entering it does nothing


def operator_workspace(device: torch.device) -> AbstractContextManager[None]:
    """The context an operator's implementation runs in: :func:`fresh_workspace` when :func:`pool_may_adopt`,
    else none (the implementation keeps its buffers as an eager call does)."""
    return fresh_workspace() if pool_may_adopt(device) else _KEEP_WORKSPACE
