"""The gated delta rule in chunks (the WY / "UT transform" form), in plain PyTorch.

Same recurrence as :func:`bkbench.harness.baselines.references.gated_delta_rule_sequential`:

    S_t = (I - beta_t k_t k_t^T) Diag(alpha_t) S_{t-1} + beta_t k_t v_t^T,   o_t = scale * S_t^T q_t

but computed a chunk of Q tokens at a time (Yang et al. 2024, "Parallelizing linear transformers with the
delta rule over sequence length"; Yang et al. 2025 for the gate). Write the update as
S_i = Diag(alpha_i) S_{i-1} + k_i u_i^T with the corrected values u_i = beta_i (v_i - (Diag(alpha_i) S_{i-1})^T k_i).
With S0 the state entering the chunk and gamma_i the gates' cumulative log-decay inside it:

    u_i + beta_i sum_{j<i} (k_i . (e^{gamma_i - gamma_j} * k_j)) u_j = beta_i (v_i - (e^{gamma_i} * k_i)^T S0)

a unit lower-triangular system for the Q rows of U (one triangular solve per chunk); then

    o_i   = scale ((e^{gamma_i} * q_i)^T S0 + sum_{j<=i} (q_i . (e^{gamma_i - gamma_j} * k_j)) u_j)
    S_end = Diag(e^{gamma_Q}) S0 + sum_j (e^{gamma_Q - gamma_j} * k_j) u_j^T

Only the chunk-to-chunk state pass is sequential. Every exponent is a decay over tokens i >= j (<= 0), so
nothing overflows. It is the delta-rule core of the Gated DeltaNet layer where fla-core cannot run, and an
independent formulation the tests compare the sequential reference with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gated_delta_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor,
    scale: float | None = None,
    chunk: int = 64,
) -> torch.Tensor:
    """Chunked gated delta rule.

    Shapes: q, k (batch, N, H, K); v (batch, N, H, V); beta (batch, N, H); g None, (batch, N, H) or
    (batch, N, H, K) log forget gates. Computes in float32 (float64 for float64 q) and returns (batch, N, H, V)
    in v's dtype. Differentiable (autograd through the solves).
    """
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    cd = torch.float64 if q.dtype == torch.float64 else torch.float32
    batch, n_len, heads, kd = q.shape
    vd = v.shape[-1]
    if n_len == 0:
        return v.new_zeros(batch, 0, heads, vd)
    size = min(chunk, n_len)
    n_chunks = -(-n_len // size)
    pad = n_chunks * size - n_len
    if g is None:
        g = q.new_zeros(batch, n_len, heads, dtype=cd)
    per_channel = g.dim() == 4

    def split(t: torch.Tensor) -> torch.Tensor:  # (b, N, H, ...) -> (b, H, c, Q, ...), padded with zeros
        t = t.to(cd)
        if pad:  # padded tokens: no write (k = 0, beta = 0), no decay (g = 0); their outputs are dropped
            t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        t = t.reshape(batch, n_chunks, size, heads, *t.shape[3:])
        return t.permute(0, 3, 1, 2, *range(4, t.dim())).contiguous()

    qc, kc, vc, bc, gc = split(q), split(k), split(v), split(beta), split(g)
    gamma = torch.cumsum(gc, dim=3)  # (b, H, c, Q) or (b, H, c, Q, K)
    scale = kd ** -0.5 if scale is None else scale
    incl = torch.tril(torch.ones(size, size, dtype=torch.bool, device=q.device))
    strict = torch.tril(incl, diagonal=-1)
    if per_channel:  # decay[i, j, c] = exp(gamma_ic - gamma_jc) for j <= i
        diff = gamma[..., :, None, :] - gamma[..., None, :, :]
        decay = torch.exp(diff.masked_fill(~incl[..., None], float("-inf")))
        kk = torch.einsum("...ix,...jx,...ijx->...ij", kc, kc, decay)
        qk = torch.einsum("...ix,...jx,...ijx->...ij", qc, kc, decay)
        g_in = torch.exp(gamma)  # (b, H, c, Q, K): decay from the chunk start to token i, per channel
        g_out = torch.exp(gamma[..., -1:, :] - gamma)  # from token j to the chunk end
        g_end = torch.exp(gamma[..., -1, :])[..., None]  # (b, H, c, K, 1)
    else:
        decay = torch.exp((gamma[..., :, None] - gamma[..., None, :]).masked_fill(~incl, float("-inf")))
        kk = (kc @ kc.transpose(-1, -2)) * decay
        qk = (qc @ kc.transpose(-1, -2)) * decay
        g_in = torch.exp(gamma)[..., None]
        g_out = torch.exp(gamma[..., -1:] - gamma)[..., None]
        g_end = torch.exp(gamma[..., -1])[..., None, None]
    eye = torch.eye(size, dtype=cd, device=q.device)
    system = eye + bc[..., None] * kk.masked_fill(~strict, 0.0)  # unit lower triangular (b, H, c, Q, Q)
    qk = qk.masked_fill(~incl, 0.0)
    state = q.new_zeros(batch, heads, kd, vd, dtype=cd)
    outs = []
    for c in range(n_chunks):
        rhs = bc[:, :, c, :, None] * (vc[:, :, c] - (g_in[:, :, c] * kc[:, :, c]) @ state)
        u = torch.linalg.solve_triangular(system[:, :, c], rhs, upper=False, unitriangular=True)
        outs.append(scale * ((g_in[:, :, c] * qc[:, :, c]) @ state + qk[:, :, c] @ u))
        state = g_end[:, :, c] * state + (g_out[:, :, c] * kc[:, :, c]).transpose(-1, -2) @ u
    o = torch.stack(outs, dim=2)  # (b, H, c, Q, V)
    o = o.permute(0, 2, 3, 1, 4).reshape(batch, n_chunks * size, heads, vd)
    return o[:, :n_len].to(v.dtype)
