"""Layer-level baselines: four blocks mapping x (B, N, d) -> (B, N, d) at the same (B, N, d).

- ``bk``: :class:`BKLayer` - potential projection d -> h chains, BK-core along N (T = H0 + diag(v), H0 the
  discrete Laplacian, z = 1j), features (Re G, Im G) 2h -> d.
- ``mamba2``: :class:`Mamba2Layer` - in-projection to (z, x, B, C, dt), causal depthwise conv (k = 4) + SiLU,
  SSD (fla-core's Triton ``chunk_simple_gla`` on CUDA when installed, else the chunked PyTorch SSD), D skip,
  gated RMSNorm, out-projection. Expand 2, head dim 64, state 128, one B/C group (Mamba-2 defaults).
- ``gated_deltanet``: :class:`~bkbench.harness.baselines.gdn_layer.GatedDeltaNetLayer` - q, k, v projections with
  short causal convolutions, the gated delta rule over d/64 heads (fla-core's Triton kernel on CUDA when it takes
  the case, else the chunked PyTorch form), gated RMSNorm, out-projection (about 5d² parameters).
- ``attention``: :class:`AttentionBlock` - QKV projection d -> 3d, causal SDPA with d/64 heads of 64 (any
  one backend or PyTorch's default choice), out-projection d -> d.

Parameters are created in the case dtype (pure bf16/fp32 layers; no autocast, no fp32 master weights).
Parameter counts differ by design (BK 3d², attention 4d², Gated DeltaNet about 5d², Mamba-2 about 6d² at
d = 1024 with h = d): the
comparison is at equal (B, N, d), the way the blocks are swapped in a model; :func:`layer_model` reports
parameters and FLOPs next to the time.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bkbench.harness.baselines.case import Case
from bkbench.harness.baselines.gdn_layer import GatedDeltaNetLayer, gdn_layer_counts
from bkbench.harness.baselines.models import (
    F32,
    Model,
    _model,
    attention_model,
    bk_core_model,
    delta_rule_model,
    elt,
    ssd_model,
)

LAYERS = ("bk", "mamba2", "attention", "gated_deltanet")


def differentiable_bk_impl(device: str) -> str:
    """The first exact, usable, differentiable BK-core implementation in the dispatcher's order for ``device``.

    ``impl="auto"`` may pick a forward-only kernel (e.g. ``triton_fused``); training needs gradients.
    """
    from bkbench.registry import default_registry

    reg = default_registry()
    order = list(reg.fallback_order(device)) + [r.name for r in reg.implementations("bk")]
    for name in order:
        if name not in reg:
            continue
        rec = reg.get(name)
        if rec.exact and rec.differentiable and device in rec.devices and rec.unavailable_reason() is None:
            return name
    raise ValueError(f"impl: no exact differentiable BK-core implementation is usable on {device}")


class BKLayer(nn.Module):
    """x (B, N, d) -> v = W_in x (B, N, h) -> G = BK-core(a = -2 + v, b = c = 1, z) over the h chains of
    length N -> [Re G, Im G] (B, N, 2h) -> W_out (B, N, d). ``impl``: a bkbench BK-core registry name;
    with "auto", a forward under autograd uses :func:`differentiable_bk_impl` (the dispatcher's choice
    may have no backward)."""

    def __init__(self, d: int, h: int | None = None, impl: str = "auto", z: complex = 1j) -> None:
        super().__init__()
        self.h = h or d
        self.impl = impl
        self.z = z
        self.proj_in = nn.Linear(d, self.h)
        self.proj_out = nn.Linear(2 * self.h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from bkbench.api import bk_core

        v = self.proj_in(x)  # (B, N, h)
        a = (v - 2.0).transpose(1, 2)  # (B, h, N): one chain per (sequence, channel)
        impl = self.impl
        if impl == "auto" and a.requires_grad:
            impl = differentiable_bk_impl(a.device.type)
        g = bk_core(a, 1.0, 1.0, self.z, impl=impl)  # complex, (B, h, N)
        feats = torch.cat([g.real, g.imag], dim=1).transpose(1, 2).to(x.dtype)  # (B, N, 2h)
        return self.proj_out(feats)


def _resolve_ssd(ssd: str, device_type: str) -> Any:
    """The SSD callable for the Mamba-2 layer: "fla", "torch" or "auto" (fla on CUDA when available)."""
    from bkbench.registry import default_registry

    if ssd not in ("auto", "fla", "torch"):
        raise ValueError(f"ssd: {ssd!r} must be 'auto', 'fla' or 'torch'")
    reg = default_registry()
    if ssd in ("auto", "fla") and "ssm_fla_ssd" in reg:
        rec = reg.get("ssm_fla_ssd")
        reason = rec.unavailable_reason() or (None if device_type in rec.devices else f"not on {device_type}")
        if reason is None:
            return rec.fn
        if ssd == "fla":
            raise ValueError(f"ssd: 'fla' is not usable here ({reason}); use ssd='torch' or 'auto'")
    elif ssd == "fla":
        raise ValueError("ssd: 'fla' requested but kernels/ssm/ssm_fla_ssd.py is not registered")
    from bkbench.kernels.ssm.ssm_ssd_chunked import ssd_chunked

    return ssd_chunked


class Mamba2Layer(nn.Module):
    """Mamba-2 block (without the residual and pre-norm), x (B, N, d) -> (B, N, d)."""

    def __init__(
        self, d: int, d_state: int = 128, headdim: int = 64, expand: int = 2, d_conv: int = 4, ssd: str = "auto"
    ) -> None:
        super().__init__()
        self.d_inner = expand * d
        if self.d_inner % headdim:
            raise ValueError(f"headdim: expand*d = {self.d_inner} is not a multiple of headdim={headdim}")
        self.heads = self.d_inner // headdim
        self.headdim, self.d_state, self.ssd = headdim, d_state, ssd
        conv_dim = self.d_inner + 2 * d_state
        self.in_proj = nn.Linear(d, 2 * self.d_inner + 2 * d_state + self.heads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1)
        gen = torch.Generator().manual_seed(0)
        dt0 = torch.exp(math.log(1e-3) + (math.log(1e-1) - math.log(1e-3)) * torch.rand(self.heads, generator=gen))
        self.dt_bias = nn.Parameter(dt0 + torch.log(-torch.expm1(-dt0)))
        self.A_log = nn.Parameter(torch.log(1.0 + 15.0 * torch.rand(self.heads, generator=gen)))
        self.D = nn.Parameter(torch.ones(self.heads))
        self.norm_weight = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n_len, _ = x.shape
        di, n, h, p = self.d_inner, self.d_state, self.heads, self.headdim
        z, xbc, dt = torch.split(self.in_proj(x), [di, di + 2 * n, h], dim=-1)
        xbc = F.silu(self.conv1d(xbc.transpose(1, 2))[..., :n_len].transpose(1, 2))
        xs, bm, cm = torch.split(xbc, [di, n, n], dim=-1)
        dt = F.softplus(dt.float() + self.dt_bias.float())  # (B, N, H)
        a = -torch.exp(self.A_log.float())
        xh = xs.reshape(b, n_len, h, p)
        bh = bm[:, :, None, :].expand(b, n_len, h, n)
        ch = cm[:, :, None, :].expand(b, n_len, h, n)
        ssd = _resolve_ssd(self.ssd, x.device.type)
        y = ssd(xh.contiguous(), dt, a, bh.contiguous(), ch.contiguous())
        y = (y + self.D.to(y.dtype)[:, None] * xh).reshape(b, n_len, di)
        y = y * F.silu(z)
        y32 = y.float()
        y = (y32 * torch.rsqrt(y32.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * self.norm_weight
        return self.out_proj(y)


class AttentionBlock(nn.Module):
    """QKV projection, SDPA with d/head_dim heads, out-projection. ``backend``: None (PyTorch chooses) or
    "flash", "cudnn", "efficient", "math"."""

    BACKENDS = ("flash", "cudnn", "efficient", "math")

    def __init__(self, d: int, head_dim: int = 64, causal: bool = True, backend: str | None = None) -> None:
        super().__init__()
        if d % head_dim:
            raise ValueError(f"d: {d} is not a multiple of head_dim={head_dim}")
        if backend is not None and backend not in self.BACKENDS:
            raise ValueError(f"backend: {backend!r} must be None or one of {self.BACKENDS}")
        self.heads, self.head_dim, self.causal, self.backend = d // head_dim, head_dim, causal, backend
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n_len, d = x.shape
        q, k, v = self.qkv(x).view(b, n_len, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.backend is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            enum = {
                "flash": SDPBackend.FLASH_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "math": SDPBackend.MATH,
            }[self.backend]
            with sdpa_kernel(enum):
                o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(o.transpose(1, 2).reshape(b, n_len, d))


def build_layer(name: str, case: Case, **options: Any) -> nn.Module:
    """The layer ``name`` (one of LAYERS) for ``case``, on its device, in its dtype, seeded."""
    torch.manual_seed(case.seed)
    if name == "bk":
        layer: nn.Module = BKLayer(case.d, **options)
    elif name == "mamba2":
        layer = Mamba2Layer(case.d, **options)
    elif name == "attention":
        layer = AttentionBlock(case.d, head_dim=case.head_dim, causal=case.causal, **options)
    elif name == "gated_deltanet":
        layer = GatedDeltaNetLayer(case.d, case, **{"head_dim": case.head_dim, **options})
    else:
        raise ValueError(f"layer: {name!r} is not one of {LAYERS}")
    return layer.to(device=case.device, dtype=case.dtype)


def _linear(tokens: int, d_in: int, d_out: int) -> float:
    return 2.0 * tokens * d_in * d_out


def layer_model(name: str, case: Case, layer: nn.Module | None = None) -> Model:
    """FLOPs, parameters and activation memory of a layer at ``case`` (same conventions as models.py).

    ``bytes_min`` = x read + y written + parameters read once; ``workspace`` = the layer's core workspace
    plus its projected activations.
    """
    layer = layer or build_layer(name, case.with_(device="cpu", dtype=torch.float32))
    params = sum(p.numel() for p in layer.parameters())
    e = elt(case.dtype)
    tokens = case.B * case.N
    io = 2.0 * tokens * case.d * e + params * e
    if name == "bk":
        h = layer.h
        core = bk_core_model(case.B * h, case.N)
        lin = _linear(tokens, case.d, h) + _linear(tokens, 2 * h, case.d)
        acts = tokens * (h + 2 * h) * e
        flops, bwd = lin + core.flops, 2 * lin + core.flops_bwd
        work = core.peak_fwd + acts
        state = 0.0
    elif name == "attention":
        core = attention_model(case, "fused")
        lin = _linear(tokens, case.d, 3 * case.d) + _linear(tokens, case.d, case.d)
        acts = tokens * 4 * case.d * e
        flops, bwd = lin + core.flops, 2 * lin + core.flops_bwd
        work = core.workspace + acts
        state = core.state
    elif name == "mamba2":
        di, n, hh = layer.d_inner, layer.d_state, layer.heads
        core_case = case.with_(d=di, state=n, head_dim=layer.headdim)
        core = ssd_model(core_case, "fused")
        conv = 2.0 * tokens * (di + 2 * n) * layer.conv1d.kernel_size[0]
        lin = _linear(tokens, case.d, 2 * di + 2 * n + hh) + _linear(tokens, di, case.d)
        elementwise = 12.0 * tokens * di
        acts = tokens * (2 * di + 2 * n + hh + 3 * di) * e + tokens * hh * n * 2 * e
        flops = lin + conv + core.flops + elementwise
        bwd = 2 * (lin + conv + elementwise) + core.flops_bwd
        work = core.workspace + acts
        state = case.B * hh * layer.headdim * n * F32
    elif name == "gated_deltanet":
        counts = gdn_layer_counts(layer, tokens, case.d)
        core_case = case.with_(d=layer.heads * layer.head_dim, head_dim=layer.head_dim, state=None)
        variant = "fused" if layer.core_name == "fla" else "materialized"
        core = delta_rule_model(core_case, variant, 64, "head", value_dim=layer.value_dim)
        rest = counts["linear"] + counts["conv"] + counts["elementwise"]
        flops, bwd = rest + core.flops, 2 * rest + core.flops_bwd
        work = core.workspace + counts["activations"] * e
        state = core.state
    else:
        raise ValueError(f"layer: {name!r} is not one of {LAYERS}")
    return _model(flops, bwd / flops if flops else 0.0, io, 0.0, work, state, note=f"{params} parameters")
