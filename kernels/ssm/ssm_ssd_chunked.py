"""Mamba-2 SSD in plain PyTorch: the chunked ("state space duality") algorithm.

Form ``ssd``: x (B, N, H, P), dt (B, N, H) > 0, A (H,) < 0, B, C (B, N, H, n) -> y (B, N, H, P) with
h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t.

Split N into chunks of Q tokens. Inside a chunk the output is the masked quadratic form
(C B^T ∘ L) (dt·x) with L_ts = exp(sum_{t>=r>s} dt_r A); each chunk's final state is passed to the next
through the same decay structure at chunk granularity. Segment sums are formed by cumulative sums of
masked copies (not by differences of one long cumsum), so they do not lose precision at large N.

Runs on CPU and GPU; it is the SSD used by the Mamba-2 layer when fla-core is not available. Memory is
"materialized": (B, H, N/Q, Q, Q) decay blocks and (B, N/Q, H, P, n) states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bkbench.baseline_meta import baseline
from bkbench.registry import register


def segment_sum(a: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T): out[i, j] = sum_{j < k <= i} a_k for i >= j, -inf above the diagonal."""
    t = a.shape[-1]
    strict = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=-1)
    rep = a[..., :, None].expand(*a.shape, t).masked_fill(~strict, 0.0)  # rep[..., k, j] = a_k for k > j
    sums = torch.cumsum(rep, dim=-2)
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device))
    return sums.masked_fill(~lower, float("-inf"))


def ssd_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """Chunked SSD. Shapes as in the module docstring. Computes in float32 (float64 for float64 x)."""
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    cd = torch.float64 if x.dtype == torch.float64 else torch.float32
    batch, n_len, heads, p = x.shape
    n = B.shape[-1]
    if n_len == 0:
        return x.new_zeros(batch, 0, heads, p)
    q = min(chunk, n_len)
    c = -(-n_len // q)
    pad = c * q - n_len
    dtc = dt.to(cd)
    xdt = x.to(cd) * dtc[..., None]
    a = dtc * A.to(cd)  # (b, N, H) log-decay per step
    Bc, Cc = B.to(cd), C.to(cd)
    if pad:  # padded steps: no decay, no input; their outputs are dropped
        xdt = F.pad(xdt, (0, 0, 0, 0, 0, pad))
        a = F.pad(a, (0, 0, 0, pad))
        Bc = F.pad(Bc, (0, 0, 0, 0, 0, pad))
        Cc = F.pad(Cc, (0, 0, 0, 0, 0, pad))
    xdt = xdt.reshape(batch, c, q, heads, p)
    Bc = Bc.reshape(batch, c, q, heads, n)
    Cc = Cc.reshape(batch, c, q, heads, n)
    a = a.reshape(batch, c, q, heads).permute(0, 3, 1, 2)  # (b, H, c, Q)
    a_cum = torch.cumsum(a, dim=-1)

    # 1. within chunks: y = (C B^T ∘ L) xdt
    decay = torch.exp(segment_sum(a))  # (b, H, c, Q, Q)
    scores = torch.einsum("bclhn,bcshn->bhcls", Cc, Bc) * decay
    y = torch.einsum("bhcls,bcshp->bclhp", scores, xdt)
    if c > 1:
        # 2. each chunk's own end state
        to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, H, c, Q), exponents in [sum of one chunk, 0]
        states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, to_end, xdt)
        # 3. carry states across chunks: entering chunk z = sum_{c' < z} decay(c'+1..z-1) states[c']
        chunk_decay = torch.exp(segment_sum(F.pad(a_cum[..., -1], (1, 0))))  # (b, H, c+1, c+1)
        states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
        entering = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)[:, :-1]
        # 4. their contribution inside each chunk
        y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, entering, torch.exp(a_cum))
    return y.reshape(batch, c * q, heads, p)[:, :n_len].to(x.dtype)


@register(
    "ssm_ssd_chunked",
    kind="ssm",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.bfloat16, torch.float16),
    differentiable=True,
    description="Mamba-2 SSD, chunked PyTorch (quadratic inside chunks, states across)",
    defaults={"chunk": 64},
)
@baseline("ssd", variant="materialized")
def ssm_ssd_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """Mamba-2 SSD. Returns (B, N, H, P) in x's dtype."""
    return ssd_chunked(x, dt, A, B, C, chunk=chunk)
