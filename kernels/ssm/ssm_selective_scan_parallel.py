"""Mamba-1 selective scan, parallel over N: a two-level associative scan in log-decay space (PyTorch).

The recurrence x_t = exp(l_t) x_{t-1} + v_t (l_t = dt_t·A <= 0, v_t = dt_t·B_t·u_t) is a scan over pairs
(l, v) with the associative combine (l1, v1) then (l2, v2) = (l1 + l2, exp(l2)·v1 + v2). Decays are carried
as summed logs, so products of many decays never underflow into the values (exp(l) <= 1: nothing overflows).

1. inside chunks of L tokens: Hillis–Steele inclusive scan, log2(L) vectorised passes;
2. across chunks: the same scan over the N/L chunk totals (log2(N/L) passes on (B, d, N/L, n));
3. fix-up: x_t += exp(l_chunk-prefix_t) · carry_in; y_t = <C_t, x_t> + D·u_t, gated by silu(z).

Work O(B·d·N·n·log L), depth O(log N), memory a few (B, d, N, n) float32 tensors ("materialized" states:
a fused CUDA kernel keeps them in registers). Differentiable through autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bkbench.baseline_meta import baseline
from bkbench.registry import register


def _shift(t: torch.Tensor, offset: int, dim: int) -> torch.Tensor:
    """``t`` moved ``offset`` places towards higher indices along ``dim``, zero-filled."""
    keep = t.narrow(dim, 0, t.shape[dim] - offset)
    pad_shape = list(t.shape)
    pad_shape[dim] = offset
    return torch.cat([t.new_zeros(pad_shape), keep], dim=dim)


def log_decay_scan(logd: torch.Tensor, v: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of x_i = exp(logd_i)·x_{i-1} + v_i along ``dim`` (x_{-1} = 0), Hillis–Steele.

    Returns (cumulative log-decay, x), both of ``v``'s shape.
    """
    n = v.shape[dim]
    offset = 1
    while offset < n:
        v = v + torch.exp(logd) * _shift(v, offset, dim)
        logd = logd + _shift(logd, offset, dim)
        offset *= 2
    return logd, v


@register(
    "ssm_selective_scan_parallel",
    kind="ssm",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.bfloat16, torch.float16),
    differentiable=True,
    description="Mamba-1 selective scan, chunked log-decay associative scan in PyTorch",
    defaults={"chunk": 64},
)
@baseline("selective_scan", variant="materialized")
def ssm_selective_scan_parallel(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk: int = 64,
) -> torch.Tensor:
    """Selective scan, parallel. Returns (B, d, N) in u's dtype. ``chunk``: tokens per first-level chunk."""
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    cd = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, d, n_len = u.shape
    n = A.shape[1]
    if n_len == 0:
        return u.new_zeros(batch, d, 0)
    dt = delta.to(cd)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cd)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uc = u.to(cd)
    logd = dt[..., None] * A.to(cd)[None, :, None, :]  # (b, d, N, n)
    v = (dt * uc)[..., None] * B.to(cd).transpose(1, 2)[:, None]  # (b, d, N, n)
    length = min(chunk, n_len)
    n_chunks = -(-n_len // length)
    pad = n_chunks * length - n_len
    if pad:  # identity elements: no decay, no input
        logd = F.pad(logd, (0, 0, 0, pad))
        v = F.pad(v, (0, 0, 0, pad))
    logd = logd.reshape(batch, d, n_chunks, length, n)
    v = v.reshape(batch, d, n_chunks, length, n)
    logd, x = log_decay_scan(logd, v, dim=3)
    if n_chunks > 1:
        _, carry = log_decay_scan(logd[:, :, :, -1], x[:, :, :, -1], dim=2)  # state at each chunk's end
        carry_in = _shift(carry, 1, dim=2)  # state entering each chunk
        x = x + torch.exp(logd) * carry_in[:, :, :, None, :]
    x = x.reshape(batch, d, n_chunks * length, n)[:, :, :n_len]
    y = torch.einsum("bdtn,bnt->bdt", x, C.to(cd))
    if D is not None:
        y = y + D.to(cd)[:, None] * uc
    if z is not None:
        y = y * F.silu(z.to(cd))
    return y.to(u.dtype)
