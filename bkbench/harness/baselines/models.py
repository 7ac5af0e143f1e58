"""Analytic FLOP, byte and memory models, reported next to the measured time and peak memory.

Conventions (one table in docs/baselines.md spells them out):

- ``flops``: useful forward floating-point operations. A multiply-add is 2; ``exp``, ``softplus``,
  division count 1 each. Attention counts 4·Dh per allowed (query, key) pair (QKᵀ and PV, the FlashAttention
  convention), so causal is half of bidirectional and a block-sparse mask scales it by 1 - s. Chunked SSD/GLA
  count what the chunked algorithm does (full Q x Q tiles inside chunks).
- ``flops_bwd``: backward operations = ``bwd_factor`` x forward, with bwd_factor 2 for SSMs and attention
  (two products per forward product) and 1 for the BK-core (the exact gradient is two more first-order
  recurrences, about one forward; see bk-core-math.md). These are conventions, not counts of a kernel.
- ``bytes_min``: compulsory memory traffic of one forward: every input read once, every output written
  once (parameters in float32). Time x bandwidth below this is impossible; it defines the roofline.
- ``workspace``: the dominant intermediate memory of the variant (fused kernels keep per-step state on chip;
  materialized ones write (.., N, n) states, Q x Q decay tiles or N x N scores).
- ``peak_fwd`` / ``peak_fwd_bwd``: inputs + outputs + workspace; fwd+bwd adds the input gradients and keeps
  the workspace alive for the backward (autograd saves it). An estimate to compare with the measured peak.
- ``state``: inference state per sequence batch: SSM B·d·n (constant in N), attention's KV cache 2·B·N·d
  (grows with N); the bidirectional BK-core has none (it needs the whole chain) - 0 with a note.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from bkbench.harness.baselines.case import Case

F32 = 4


def elt(dtype: torch.dtype) -> int:
    """Bytes per element of ``dtype``."""
    return torch.empty((), dtype=dtype).element_size()


@dataclass(frozen=True)
class Model:
    """Analytic cost of one call (see module docstring for each field's convention)."""

    flops: float
    flops_bwd: float
    bytes_min: float
    workspace: float
    peak_fwd: float
    peak_fwd_bwd: float
    state: float
    note: str = ""

    def flops_for(self, mode: str) -> float:
        return self.flops if mode == "fwd" else self.flops + self.flops_bwd

    def peak_for(self, mode: str) -> float:
        return self.peak_fwd if mode == "fwd" else self.peak_fwd_bwd

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def _model(
    flops: float, bwd_factor: float, inputs: float, outputs: float, workspace: float, state: float, note: str = ""
) -> Model:
    return Model(
        flops=float(flops),
        flops_bwd=float(bwd_factor * flops),
        bytes_min=float(inputs + outputs),
        workspace=float(workspace),
        peak_fwd=float(inputs + outputs + workspace),
        peak_fwd_bwd=float(2 * inputs + outputs + workspace),
        state=float(state),
        note=note,
    )


# -- BK-core ------------------------------------------------------------------------------------------
BK_FLOPS_PER_ELEMENT = 28
"""Pivot form per element: alpha = a - z (1), forward pivot D (8: real/complex division 6 + subtract 2),
backward pivot E (8), G = 1/(D + E - alpha) (4 + 6 for the complex reciprocal), rounded to 28 (stated
here so that the ratio to measured time is reproducible)."""


def bk_core_model(chains: int, n: int, dtype: torch.dtype = torch.float32, uniform_k: bool = False) -> Model:
    """BK-core over ``chains`` chains of length ``n``: a, k real in, G complex out, pivots D stored once.

    For float32: 4 (a) + 4 (k) + 8 (G) = 16 B per element (12 with a uniform coupling), the anchors' figure.
    """
    e = elt(dtype) if dtype != torch.bfloat16 and dtype != torch.float16 else F32  # bk_core computes in fp32
    c = 2 * e  # complex element
    elems = chains * n
    inputs = elems * e + (0 if uniform_k else chains * max(n - 1, 0) * e)
    outputs = elems * c
    return _model(
        BK_FLOPS_PER_ELEMENT * elems,
        1.0,
        inputs,
        outputs,
        workspace=elems * c,
        state=0.0,
        note="bidirectional: no recurrent inference state; workspace = stored forward pivots D",
    )


# -- SSMs -----------------------------------------------------------------------------------------------
def selective_scan_model(case: Case, variant: str = "fused", chunk: int = 64) -> Model:
    """Mamba-1 selective scan over (B, d, N) with state n (case.state or 16).

    flops = B·d·N·(7n + 12): per state element exp(dt·A) 2, dt·u·B 1, state update 2, C·x 2; per channel
    softplus/bias/D-skip/silu-gate about 12.
    """
    n = case.state or 16
    e = elt(case.dtype)
    bdn = case.B * case.d * case.N
    inputs = 3 * bdn * e + 2 * case.B * n * case.N * e + case.d * n * F32 + 2 * case.d * F32
    outputs = bdn * e
    states = bdn * n * F32
    if variant == "fused":
        # mamba_ssm keeps (B, d, N/2048, 2n) float32 chunk-boundary states for the backward
        workspace = case.B * case.d * 2 * n * F32 * max(1, -(-case.N // 2048))
    elif variant == "materialized":
        workspace = 4 * states  # log-decays, inputs, scanned states, one temporary
    elif variant == "sequential":
        workspace = outputs + case.B * case.d * n * F32
    else:
        raise ValueError(f"variant: {variant!r} must be 'fused', 'materialized' or 'sequential'")
    return _model(bdn * (7 * n + 12), 2.0, inputs, outputs, workspace, case.B * case.d * n * F32)


def ssd_model(case: Case, variant: str = "fused", chunk: int = 64) -> Model:
    """Mamba-2 SSD over (B, N, H = d/64, P = 64) with state n (case.state or 128), chunks of Q = 64.

    flops = B·N·H·(2Qn + 2QP + 4nP): C·Bᵀ inside chunks, (scores)·x, chunk states, state -> output.
    """
    n = case.state or 128
    q = min(chunk, case.N)
    h, p, e = case.heads, case.head_dim, elt(case.dtype)
    tokens = case.B * case.N * h
    inputs = tokens * (p + 2 * n) * e + tokens * F32 + h * F32
    outputs = tokens * p * e
    n_chunks = -(-case.N // q)
    chunk_states = case.B * h * n_chunks * p * n
    if variant == "fused":
        workspace = chunk_states * e
    elif variant == "materialized":
        workspace = 2 * tokens * q * F32 + 2 * chunk_states * F32 + case.B * h * (n_chunks + 1) ** 2 * F32
    else:
        raise ValueError(f"variant: {variant!r} must be 'fused' or 'materialized'")
    flops = tokens * (2 * q * n + 2 * q * p + 4 * n * p)
    return _model(flops, 2.0, inputs, outputs, workspace, case.B * h * p * n * F32)


def gla_model(case: Case, variant: str = "fused", chunk: int = 64) -> Model:
    """GLA over (B, N, H = d/64) with K = V = 64: like SSD with K in place of n, plus per-key gates."""
    kd = case.state or case.head_dim
    vd = case.head_dim
    q = min(chunk, case.N)
    h, e = case.heads, elt(case.dtype)
    tokens = case.B * case.N * h
    inputs = tokens * (2 * kd + vd) * e + tokens * kd * F32
    outputs = tokens * vd * e
    workspace = case.B * h * -(-case.N // q) * kd * vd * e + tokens * q * F32
    flops = tokens * (2 * q * kd + 2 * q * vd + 4 * kd * vd)
    return _model(flops, 2.0, inputs, outputs, workspace, case.B * h * kd * vd * F32)


def delta_rule_model(case: Case, variant: str = "fused", chunk: int = 64, gate: str = "head",
                     value_dim: int | None = None) -> Model:
    """DeltaNet / Gated DeltaNet / KDA over (B, N, H = d/64) with K = V = 64, chunks of Q (the WY form).

    flops = B·N·H·(6QK + 4QV + 6KV + 2Q²/3): K·Kᵀ and Q·Kᵀ inside chunks (4QK), W = T·K and U = T·V (2QK + 2QV),
    the triangular inverse T (Q³/3 multiply-adds per chunk), state reads W·S and Q·S, the state update Kᵀ·U
    (6KV), the intra-chunk output (2QV). ``gate``: "none" (DeltaNet), "head" (one per token and head) or
    "channel" (KDA: one per key channel); gates and beta are float32 inputs. ``value_dim`` (default head_dim):
    V when it differs from K (the Gated DeltaNet layer's expand_v).
    """
    kd = case.state or case.head_dim
    vd = value_dim or case.head_dim
    q = min(chunk, case.N)
    h, e = case.heads, elt(case.dtype)
    tokens = case.B * case.N * h
    gates = {"none": 0, "head": 1, "channel": kd}[gate]
    inputs = tokens * (2 * kd + vd) * e + tokens * (1 + gates) * F32
    outputs = tokens * vd * e
    chunk_states = case.B * h * -(-case.N // q) * kd * vd
    if variant == "fused":  # fla keeps the chunk-boundary states, W and U, and the per-chunk inverse
        workspace = chunk_states * e + tokens * (kd + vd) * e + tokens * q * F32
    elif variant == "materialized":
        workspace = chunk_states * F32 + tokens * (kd + vd + 3 * q) * F32
    else:
        raise ValueError(f"variant: {variant!r} must be 'fused' or 'materialized'")
    flops = tokens * (6 * q * kd + 4 * q * vd + 6 * kd * vd + 2 * q * q / 3)
    return _model(flops, 2.0, inputs, outputs, workspace, case.B * h * kd * vd * F32)


def rwkv7_model(case: Case, variant: str = "fused", chunk: int = 16) -> Model:
    """RWKV-7 time mixing (a diagonal-plus-rank-one transition) over (B, N, H = d/64), K = V = 64, chunks of Q
    (fla's default 16 for unbounded decays).

    flops = B·N·H·(10QK + 6QV + 8KV + 2Q²/3): four intra-chunk products (q·k, q·b, a·k, a·b), the triangular
    inverse, W and U, the state reads aᵀS and qᵀS, the rank-two state update and the intra-chunk outputs.
    Inputs: r, k, v, kappa in the case dtype, w and a float32.
    """
    kd = case.state or case.head_dim
    vd = case.head_dim
    q = min(chunk, case.N)
    h, e = case.heads, elt(case.dtype)
    tokens = case.B * case.N * h
    inputs = tokens * (3 * kd + vd) * e + tokens * 2 * kd * F32
    outputs = tokens * vd * e
    chunk_states = case.B * h * -(-case.N // q) * kd * vd
    if variant == "fused":
        workspace = chunk_states * e + tokens * (2 * kd + 2 * vd) * e + 4 * tokens * q * F32
    elif variant == "materialized":
        workspace = chunk_states * F32 + tokens * (2 * kd + 2 * vd + 4 * q) * F32
    else:
        raise ValueError(f"variant: {variant!r} must be 'fused' or 'materialized'")
    flops = tokens * (10 * q * kd + 6 * q * vd + 8 * kd * vd + 2 * q * q / 3)
    return _model(flops, 2.0, inputs, outputs, workspace, case.B * h * kd * vd * F32)


DELTA_GATES = {"delta_rule": "none", "gated_delta_rule": "head", "kda": "channel"}


def attention_pairs(n: int, causal: bool, sparsity: float = 0.0) -> float:
    """Allowed (query, key) pairs: N(N+1)/2 causal or N², times (1 - s) for a block-sparse mask."""
    dense = n * (n + 1) / 2 if causal else float(n) * n
    return dense * (1.0 - sparsity)


def attention_model(case: Case, variant: str = "fused") -> Model:
    """Attention with H = d/64 heads of 64: flops = 4·B·H·pairs·Dh; KV cache 2·B·N·d elements."""
    h, dh, e = case.heads, case.head_dim, elt(case.dtype)
    pairs = attention_pairs(case.N, case.causal, case.sparsity)
    io = case.B * h * case.N * dh * e
    scores = case.B * h * float(case.N) ** 2
    if variant == "fused":
        workspace = case.B * h * case.N * F32  # log-sum-exp per row
    elif variant == "materialized":
        workspace = scores * (2 * e + F32)  # scores, float32 probabilities, probabilities in dtype
    else:
        raise ValueError(f"variant: {variant!r} must be 'fused' or 'materialized'")
    return _model(4 * case.B * h * pairs * dh, 2.0, 3 * io, io, workspace, 2 * io)


def model_for(form: str, case: Case, variant: str = "fused", **options: object) -> Model:
    """The analytic model of a baseline of ``form`` (and memory ``variant``) at ``case``."""
    chunk = int(options.get("chunk", 64))  # type: ignore[call-overload]
    if form == "selective_scan":
        return selective_scan_model(case, variant, chunk)
    if form == "ssd":
        return ssd_model(case, variant, chunk)
    if form == "gla":
        return gla_model(case, variant, chunk)
    if form == "attention":
        return attention_model(case, variant)
    if form in DELTA_GATES:
        return delta_rule_model(case, variant, chunk, DELTA_GATES[form])
    if form == "rwkv7":
        return rwkv7_model(case, variant, int(options.get("chunk", 16)))  # type: ignore[call-overload]
    raise ValueError(f"form: {form!r} has no model; known: selective_scan, ssd, gla, attention, delta_rule, "
                     "gated_delta_rule, kda, rwkv7")
