"""Cheating BK-core kernels for the gate's anti-cheat tests (issue 25). Not part of the package.

Each one returns correct values on the battery's fresh inputs, so the accuracy checks alone pass it; each is
caught by an anti-cheat check of ``bkbench gate`` (bkbench/harness/anticheat.py):

``cheat_memo``         memoises its result by the inputs' buffer addresses and shapes (returns a copy)
                       -> output freshness;
``cheat_mutate``       uses the caller's ``a`` as scratch space -> input mutation;
``cheat_precomputed``  returns the answer it computed for these buffers before -- the same tensor, no work
                       -> output aliasing, output freshness, physical floor (implausible speed);
``cheat_stream``       (CUDA only) launches its work on a side stream the caller never waits for
                       -> measured stream.

Use: ``bkbench gate --plugin tests/gate_cheaters.py --impl cheat_memo ...`` (or plant this file in ``kernels/``
of a checkout, as tests/test_anticheat.py does). Never ship these in ``kernels/``.
"""

from __future__ import annotations

import torch

from bkbench.kernels.bk.assoc_scan import assoc_scan
from bkbench.kernels.bk.thomas import thomas
from bkbench.registry import register

ALL = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_MEMO: dict[tuple, torch.Tensor] = {}
_ANSWERS: dict[tuple, torch.Tensor] = {}
_SIDE: dict[torch.device, torch.cuda.Stream] = {}


def _buffers(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> tuple:
    return tuple((t.data_ptr(), tuple(t.shape), t.dtype) for t in (a, k, z))


@register("cheat_memo", kind="bk", exact=True, dtypes=ALL, description="test fixture: memoises by buffer")
def cheat_memo(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    key = _buffers(a, k, z)
    if key not in _MEMO:
        _MEMO[key] = thomas(a, k, z)
    return _MEMO[key].clone()


@register("cheat_mutate", kind="bk", exact=True, dtypes=ALL, description="test fixture: writes into a")
def cheat_mutate(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    g = thomas(a, k, z)
    a.copy_(g if a.is_complex() else g.real)  # "scratch space": the caller's a now holds Re G
    return g


@register("cheat_precomputed", kind="bk", exact=True, dtypes=ALL, description="test fixture: returns a stored answer")
def cheat_precomputed(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    key = _buffers(a, k, z)
    if key not in _ANSWERS:
        _ANSWERS[key] = thomas(a, k, z)
    return _ANSWERS[key]


@register("cheat_stream", kind="bk", exact=True, devices=("cuda",), dtypes=ALL,
          description="test fixture: works on a side stream the caller does not wait for")
def cheat_stream(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    side = _SIDE.setdefault(a.device, torch.cuda.Stream(a.device))
    side.wait_stream(torch.cuda.current_stream(a.device))  # it sees the inputs ...
    with torch.cuda.stream(side):
        g = assoc_scan(a, k, z)
    return g  # ... but the caller's stream never waits for `side` (no current_stream().wait_stream(side))
