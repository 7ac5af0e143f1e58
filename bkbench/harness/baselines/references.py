"""Float64 references for the baselines: plain recurrences and a dense masked softmax, written for clarity.

Each takes the same keyword inputs as the implementations of its form (see :mod:`bkbench.harness.baselines.forms`),
upcasts everything to float64 and returns the float64 output. They are differentiable (autograd through the
loop), so the check battery can compare gradients too. They loop over N in Python: small N only.
"""

from __future__ import annotations

import math

import torch

from bkbench.kernels.ssm.ssm_selective_scan_ref import selective_scan_sequential


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.float64)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The float64 reference: :func:`selective_scan_sequential` in float64. Returns (batch, d, N) float64."""
    return selective_scan_sequential(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dtype=torch.float64)


def ssd_reference(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """Mamba-2 SSD (scalar decay per head), sequential, float64.

    Shapes: x (batch, N, H, P); dt (batch, N, H) positive step sizes; A (H,) negative; B, C (batch, N, H, n).
        h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T      (h_t: (batch, H, P, n))
        y_t = h_t C_t
    Returns (batch, N, H, P) float64.
    """
    x, dt, A, B, C = map(_f64, (x, dt, A, B, C))
    batch, n_len, heads, p = x.shape
    h = x.new_zeros(batch, heads, p, B.shape[-1])
    ys = []
    for t in range(n_len):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((h * C[:, t, :, None, :]).sum(-1))
    return torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, heads, p)


def gla_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Gated linear attention (per-key-dim log gates), sequential, float64.

    Shapes: q, k, g (batch, N, H, K) with g <= 0 (log forget gates); v (batch, N, H, V).
        S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T     (S_t: (batch, H, K, V))
        o_t = scale * q_t^T S_t,  scale = K**-0.5 by default
    Returns (batch, N, H, V) float64.
    """
    q, k, v, g = map(_f64, (q, k, v, g))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    batch, n_len, heads, kd = q.shape
    s = q.new_zeros(batch, heads, kd, v.shape[-1])
    outs = []
    for t in range(n_len):
        s = torch.exp(g[:, t])[..., None] * s + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(scale * (q[:, t, :, :, None] * s).sum(-2))
    return torch.stack(outs, dim=1) if outs else v.new_zeros(batch, 0, heads, v.shape[-1])


def attention_mask(
    n_q: int,
    n_k: int,
    causal: bool,
    block_keep: torch.Tensor | None = None,
    block_size: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor | None:
    """Element mask (n_q, n_k), True = attend: causal (i >= j) and, when given, ``block_keep[i//bs, j//bs]``."""
    if not causal and block_keep is None:
        return None
    qi = torch.arange(n_q, device=device)[:, None]
    kj = torch.arange(n_k, device=device)[None, :]
    mask = qi >= kj if causal else torch.ones(n_q, n_k, dtype=torch.bool, device=device)
    if block_keep is not None:
        if block_size is None:
            raise ValueError("block_size: needed with block_keep")
        mask = mask & block_keep.to(device)[qi // block_size, kj // block_size]
    return mask


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    block_keep: torch.Tensor | None = None,
    block_size: int | None = None,
    **_: object,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + mask) v in float64. q, k, v: (batch, H, N, Dh). Returns (batch, H, N, Dh).

    A query row with no allowed key returns zeros (FlexAttention's convention); the builders never make one.
    """
    q, k, v = map(_f64, (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    mask = attention_mask(q.shape[-2], k.shape[-2], causal, block_keep, block_size, q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if mask is not None:
        probs = torch.nan_to_num(probs, nan=0.0)
    return probs @ v


# -- the delta-rule family and RWKV-7 ---------------------------------------------------------------------
def gated_delta_rule_sequential(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """The delta rule with an optional forget gate, one step per token, in float64.

    Shapes: q, k (batch, N, H, K); v (batch, N, H, V); beta (batch, N, H) writing strengths in (0, 1);
    g (log forget gates, <= 0): None (no forgetting: DeltaNet), (batch, N, H) one per head (Gated DeltaNet) or
    (batch, N, H, K) one per key channel (Kimi Delta Attention). With alpha_t = exp(g_t) and the state
    S_t (batch, H, K, V), a key -> value memory:

        S_t = (I - beta_t k_t k_t^T) Diag(alpha_t) S_{t-1} + beta_t k_t v_t^T
        o_t = scale * S_t^T q_t,   scale = K**-0.5 by default

    i.e. decay the memory, read what it holds for k_t, and move that read toward v_t by beta_t (Schlag et al.
    2021; Yang et al. 2024, 2025; Kimi Linear 2025). Returns (batch, N, H, V) float64.
    """
    q, k, v, beta = map(_f64, (q, k, v, beta))
    g = _f64(g)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    batch, n_len, heads, kd = q.shape
    s = q.new_zeros(batch, heads, kd, v.shape[-1])
    outs = []
    for t in range(n_len):
        if g is not None:
            decay = torch.exp(g[:, t])
            s = (decay[..., None, None] if decay.dim() == 2 else decay[..., None]) * s
        k_t = k[:, t]
        read = torch.einsum("bhk,bhkv->bhv", k_t, s)  # what the memory returns for k_t
        s = s + beta[:, t, :, None, None] * k_t[..., None] * (v[:, t] - read)[..., None, :]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], s))
    return torch.stack(outs, dim=1) if outs else v.new_zeros(batch, 0, heads, v.shape[-1])


def delta_rule_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """DeltaNet: :func:`gated_delta_rule_sequential` without a gate (alpha = 1). Returns (batch, N, H, V)."""
    return gated_delta_rule_sequential(q, k, v, None, beta, scale)


def gated_delta_rule_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Gated DeltaNet: one log forget gate per head, g (batch, N, H). Returns (batch, N, H, V) float64."""
    return gated_delta_rule_sequential(q, k, v, g, beta, scale)


def kda_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Kimi Delta Attention: one log forget gate per key channel, g (batch, N, H, K). Returns (batch, N, H, V)."""
    return gated_delta_rule_sequential(q, k, v, g, beta, scale)


def rwkv7_reference(
    r: torch.Tensor,
    w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kappa: torch.Tensor,
    a: torch.Tensor,
    scale: float = 1.0,
) -> torch.Tensor:
    """RWKV-7 "Goose" time mixing (the wkv state), one step per token, in float64 (Peng et al. 2025).

    Shapes: r, k, kappa (batch, N, H, K); w (batch, N, H, K) log decays <= 0; a (batch, N, H, K) in-context
    learning rates in (0, 1); v (batch, N, H, V). kappa is the removal key (unit norm per head in RWKV-7).
    With the state S_t (batch, H, K, V) (the paper's wkv state, transposed):

        S_t = Diag(exp(w_t)) S_{t-1} - (a_t * kappa_t) (kappa_t^T S_{t-1}) + k_t v_t^T
        o_t = scale * S_t^T r_t            (RWKV-7 uses scale = 1)

    The paper writes wkv_t = wkv_{t-1} (diag(w_t) - kappa^T (a * kappa)) + v^T k with w_t the decay itself;
    here w is its logarithm. Returns (batch, N, H, V) float64.
    """
    r, w, k, v, kappa, a = map(_f64, (r, w, k, v, kappa, a))
    batch, n_len, heads, kd = r.shape
    s = r.new_zeros(batch, heads, kd, v.shape[-1])
    outs = []
    for t in range(n_len):
        removed = torch.einsum("bhk,bhkv->bhv", kappa[:, t], s)  # the value stored under kappa_t
        s = (torch.exp(w[:, t])[..., None] * s
             - (a[:, t] * kappa[:, t])[..., None] * removed[..., None, :]
             + k[:, t, :, :, None] * v[:, t, :, None, :])
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", r[:, t], s))
    return torch.stack(outs, dim=1) if outs else v.new_zeros(batch, 0, heads, v.shape[-1])
