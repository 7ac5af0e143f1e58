"""The Gated DeltaNet block (Yang, Kautz and Hatamizadeh, ICLR 2025) for the layer-level comparison.

x (B, N, d) -> q, k, v projections, each through a causal depthwise convolution (k = 4) and SiLU; q and k
L2-normalised per head; beta = sigmoid(W_b x) and the log forget gate g = -exp(A_log) softplus(W_a x + dt_bias)
per head (Mamba-2's gate); the gated delta rule over H = d / head_dim heads (key dim head_dim, value dim
head_dim * expand_v); a per-head RMSNorm of the output gated by SiLU(W_g x); the out-projection -> (B, N, d).
Without the residual and the pre-norm, like the other blocks of :mod:`bkbench.harness.baselines.layers`.

The delta-rule core is fla-core's ``chunk_gated_delta_rule`` (``ssm_fla_gated_deltanet``) where it takes the
case (CUDA, fla-core installed, dtype, and not fla's Hopper / Triton < 3.7.1 refusal of its backward), else the
chunked PyTorch form of :mod:`bkbench.harness.baselines.delta_chunked`; ``core_name`` says which, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bkbench.harness.baselines.case import Case
from bkbench.harness.baselines.delta_chunked import gated_delta_chunked

FLA_NAME = "ssm_fla_gated_deltanet"


def resolve_core(core: str, case: Case) -> tuple[str, Callable[..., torch.Tensor]]:
    """(name, fn) of the delta-rule core for a layer at ``case``: ``core`` "fla", "torch" or "auto" (fla when it
    takes the case's device, dtype and mode). ``fn(q, k, v, g, beta)`` -> (B, N, H, V)."""
    from bkbench.registry import default_registry

    if core not in ("auto", "fla", "torch"):
        raise ValueError(f"core: {core!r} must be 'auto', 'fla' or 'torch'")
    reason = ""
    if core in ("auto", "fla"):
        reg = default_registry()
        if FLA_NAME not in reg:
            reason = f"kernels/{FLA_NAME}.py is not registered"
        else:
            rec = reg.get(FLA_NAME)
            probe = case.with_(B=1, N=1, d=case.head_dim, sparsity=0.0)
            reason = rec.decline_reason(probe) or ("" if case.dtype in rec.dtypes else f"no {case.dtype} support")
            if not reason:
                return "fla", rec.fn
        if core == "fla":
            raise ValueError(f"core: 'fla' is not usable here ({reason}); use core='torch' or 'auto'")
    name = "torch (chunked PyTorch gated delta rule)" + (f"; fla not used: {reason}" if reason else "")
    return name, gated_delta_chunked


class GatedDeltaNetLayer(nn.Module):
    """Gated DeltaNet block, x (B, N, d) -> (B, N, d). ``case`` (device, dtype, mode) picks the core."""

    def __init__(self, d: int, case: Case, head_dim: int = 64, expand_v: int = 1, d_conv: int = 4,
                 core: str = "auto") -> None:
        super().__init__()
        if d % head_dim:
            raise ValueError(f"head_dim: d = {d} is not a multiple of head_dim={head_dim}")
        if not isinstance(expand_v, int) or expand_v < 1:
            raise ValueError(f"expand_v: expected a positive integer, got {expand_v!r}")
        self.heads, self.head_dim, self.value_dim = d // head_dim, head_dim, head_dim * expand_v
        hk, hv = self.heads * head_dim, self.heads * self.value_dim
        self.q_proj = nn.Linear(d, hk, bias=False)
        self.k_proj = nn.Linear(d, hk, bias=False)
        self.v_proj = nn.Linear(d, hv, bias=False)
        self.g_proj = nn.Linear(d, hv, bias=False)  # output gate
        self.a_proj = nn.Linear(d, self.heads, bias=False)  # forget gate
        self.b_proj = nn.Linear(d, self.heads, bias=False)  # writing strength beta
        conv_dim = 2 * hk + hv
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=False)
        gen = torch.Generator().manual_seed(0)
        dt0 = torch.exp(math.log(1e-3) + (math.log(1e-1) - math.log(1e-3)) * torch.rand(self.heads, generator=gen))
        self.dt_bias = nn.Parameter(dt0 + torch.log(-torch.expm1(-dt0)))
        self.A_log = nn.Parameter(torch.log(1.0 + 15.0 * torch.rand(self.heads, generator=gen)))
        self.norm_weight = nn.Parameter(torch.ones(self.value_dim))
        self.o_proj = nn.Linear(hv, d, bias=False)
        self.core_name, self._core = resolve_core(core, case.with_(head_dim=head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n_len, _ = x.shape
        h, kd, vd = self.heads, self.head_dim, self.value_dim
        qkv = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1)
        qkv = F.silu(self.conv1d(qkv.transpose(1, 2))[..., :n_len].transpose(1, 2))
        q, k, v = torch.split(qkv, [h * kd, h * kd, h * vd], dim=-1)
        q = F.normalize(q.reshape(b, n_len, h, kd).float(), dim=-1).to(x.dtype)
        k = F.normalize(k.reshape(b, n_len, h, kd).float(), dim=-1).to(x.dtype)
        v = v.reshape(b, n_len, h, vd)
        pdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        beta = torch.sigmoid(self.b_proj(x).to(pdt))
        g = -torch.exp(self.A_log.to(pdt)) * F.softplus(self.a_proj(x).to(pdt) + self.dt_bias.to(pdt))
        o = self._core(q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous(), beta.contiguous())
        o32 = o.to(pdt)
        o = (o32 * torch.rsqrt(o32.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * self.norm_weight
        o = o.reshape(b, n_len, h * vd) * F.silu(self.g_proj(x))
        return self.o_proj(o)


def gdn_layer_counts(layer: GatedDeltaNetLayer, tokens: int, d: int) -> dict[str, Any]:
    """Forward FLOPs of the projections, the convolution and the elementwise work (the core is counted by
    :func:`bkbench.harness.baselines.models.delta_rule_model`), and the projected activations' element count."""
    h, kd, vd = layer.heads, layer.head_dim, layer.value_dim
    hk, hv = h * kd, h * vd
    lin = 2.0 * tokens * d * (2 * hk + 2 * hv + 2 * h) + 2.0 * tokens * hv * d
    conv = 2.0 * tokens * (2 * hk + hv) * layer.conv1d.kernel_size[0]
    elementwise = 12.0 * tokens * hv + 8.0 * tokens * hk
    return {"linear": lin, "conv": conv, "elementwise": elementwise, "activations": tokens * (3 * hk + 3 * hv + 2 * h)}
