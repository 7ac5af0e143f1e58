"""Whether an implementation may keep device buffers between calls (its workspace).

Implementations may keep scratch buffers per device and stream between calls (``triton_fused`` keeps its fold's
flags, counters and scratch so that an eager call allocates nothing but its output). Inside a compiled graph that
must not happen: ``torch.compile(mode="reduce-overhead")`` runs its warm-up steps with every allocation routed to
its CUDA-graph memory pool and then requires each live tensor of that pool to be one of the graph's outputs, so a
buffer kept from the warm-up fails it ("tensor(s) in the cudagraph pool not tracked as outputs"). The
``bkbench::bk_core`` operators' implementations (what compiled graphs call) therefore run inside
:func:`fresh_workspace`, and an implementation asks :func:`workspace_must_be_fresh` before reusing a buffer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_STATE = threading.local()


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
