"""``triton_fused``: the fused Triton BK-core kernel (forward + exact backward w.r.t. ``a`` and ``z``).

One launch computes G for a tile of chains x segments with coalesced tile loads, the pivot recursions run on
register columns, carries between segments from a two-pass "forgetting" scheme with an a-posteriori error
bound, and one interleaved complex64 store (kernels/_triton_fused_core.py has the algorithm). Chains whose
carries do not converge to the bound (near-real z, long memory) are flagged and recomputed by an exact kernel
(prefix products of Möbius matrices, exact for any z) launched right after; no host synchronisation.

Inputs (calling convention, docs/architecture.md): ``a`` (B, N) float32 / bfloat16 / float16 (upcast in
registers), ``k`` (B, N-1) real of the same precision or a stride-0 view of one value (then read once),
``z`` (B,) complex64. Output complex64 (B, N). Complex ``a`` / complex couplings / float64 are not supported
(the gate skips those cases; ``bk_core`` upcasts bf16/fp16 only). Options: ``config`` (a
:class:`FusedConfig` or dict), ``tol`` (carry tolerance, relative error of G), ``force_exact`` (skip the fast
path: every chain through the exact kernel — for tests).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bkbench.registry import is_uniform, register
from kernels._cplx_triton import HAS_TRITON, check_device, interpreting, triton_available

if HAS_TRITON:
    from kernels import _triton_fused_core as _core

# Largest B * N accepted under the CPU interpreter (it runs the kernels element by element in numpy).
INTERPRETER_MAX_ELEMENTS = 8192
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
DEFAULT_TOL = 2e-7
# register cap of the two-tile forward kernel when the config leaves maxnreg at 0 (see FusedConfig.seq)
SEQ2_MAXNREG = 128


@dataclass(frozen=True)
class FusedConfig:
    """Launch configuration of the forward kernel.

    seg: segments per program (rows x segments of the tile); L: positions per segment (one thread's run);
    H: halo segments on each side of a chunk (chains longer than one tile); M1: length of the first pass
    (<= L); warps: num_warps; stages: num_stages (the kernel has no pipelined loads; kept for the tuner's
    record); maxpass: most passes before a chain is flagged for the exact kernel; store: how the output tile
    is written (0: columns joined into one tile, which Triton converts to its coalesced layout join by join;
    1: one store per column; 2: one store per pair of columns — see ``_triton_fused_core.store_cols``);
    seq: 2 = a chain of seg*L < N <= 2*seg*L positions that halo'd chunks would split into three or more is done
    by one program as two tiles one after the other, with exact carries between them (``_fwd_seq2_kernel``,
    about 2.1 tiles of work); chains the halo'd chunks cover in two tiles keep seq 1. 1 (default) = never.
    Measured on the H100: at N = 1024 (three halo'd chunks) 5 % faster than the halo'd chunks, with a scalar
    coupling the fastest layout (run 6: 93.1 against 97.9 µs at B 16384); at N = 768 and 520 (two halo'd
    chunks) 17-50 % slower (run 6), which is why it needs three chunks. The tuner does not search it; the
    packaged table uses it where it was measured fastest.
    maxnreg: register cap per thread passed to ptxas; 0 = the compiler's choice, except that the two-tile kernel
    is capped at ``SEQ2_MAXNREG`` (ptxas gives it 168 registers at a one-warp seg 32 / L 16 tile, 12 warps per
    SM; 128, the one-tile kernel's count, keeps 16 warps per SM and spills nothing; uncapped it measured 22 %
    slower at N = 1024).
    Entries of tuning tables written before ``seq`` existed load with seq = 1 (how they were measured).
    """

    _label: ClassVar[str] = "config"

    seg: int = 32
    L: int = 16
    H: int = 1
    M1: int = 16
    warps: int = 1
    stages: int = 1
    maxpass: int = 4
    store: int = 0
    seq: int = 1
    maxnreg: int = 0

    def __post_init__(self) -> None:
        for name in ("seg", "L"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"config.{name}: must be a power of two >= 1, got {v}")
        if not 1 <= self.M1 <= self.L:
            raise ValueError(f"config.M1: must be in 1..L={self.L}, got {self.M1}")
        if self.H < 1 or 2 * self.H >= self.seg:
            raise ValueError(f"config.H: must be >= 1 and < seg/2 = {self.seg // 2}, got {self.H}")
        if self.warps not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"config.warps: must be a power of two in 1..32, got {self.warps}")
        if self.maxpass < 2:
            raise ValueError(f"config.maxpass: must be >= 2, got {self.maxpass}")
        if self.store not in (0, 1, 2):
            raise ValueError(f"config.store: must be 0 (joined tile), 1 (per column) or 2 (column pairs), "
                             f"got {self.store}")
        if self.seq not in (1, 2):
            raise ValueError(f"config.seq: must be 1 (halo'd chunks) or 2 (two tiles in sequence), got {self.seq}")
        if self.maxnreg and not 24 <= self.maxnreg <= 255:
            raise ValueError(f"config.maxnreg: must be 0 (compiler's choice) or in 24..255, got {self.maxnreg}")

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusedConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{cls._label}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{"seq": 1, **{k: int(v) for k, v in d.items()}})  # no "seq": written before it existed


@dataclass(frozen=True)
class BwdConfig(FusedConfig):
    """Launch configuration of the backward kernel: the fields of :class:`FusedConfig` (with backward
    defaults) plus ``lin_exact``, how the F/R recurrences cross segments: 1, exact affine scans (five shuffle
    levels in a one-warp tile); 2, each segment composes its neighbour's map with the segment before (one
    shuffle level; the dropped carry is bounded by the two segments' contraction, else the chain goes to the
    exact kernel); 0, a one-segment halo with a contraction bound."""

    _label: ClassVar[str] = "bwd_config"

    seg: int = 32
    L: int = 8
    H: int = 2
    M1: int = 8
    warps: int = 1
    stages: int = 1
    maxpass: int = 4
    store: int = 0
    seq: int = 1
    lin_exact: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lin_exact not in (0, 1, 2):
            raise ValueError(f"bwd_config.lin_exact: must be 0, 1 or 2, got {self.lin_exact}")
        if self.seq != 1:
            raise ValueError(f"bwd_config.seq: the backward kernel has no two-tile mode (seq must be 1), "
                             f"got {self.seq}")


@dataclass(frozen=True)
class Plan:
    """A config resolved for one (B, N): tile R x S x L, halo H, chunks per chain NCH of CORE positions;
    seq 2: one program per R chains does two tiles in sequence (NCH = 1, H = 0)."""

    R: int
    S: int
    L: int
    H: int
    NCH: int
    CORE: int
    M1: int
    warps: int
    stages: int
    maxpass: int
    store: int = 0
    seq: int = 1
    maxnreg: int = 0

    def programs(self, batch: int) -> int:
        return math.ceil(batch / self.R) * self.NCH

    @property
    def gather(self) -> bool:
        """Shift carries between segments by ``tl.gather`` (one warp: shuffles) rather than a scan (the kernels'
        ``GATHER``; across warps a gather replicates the tile)."""
        return self.warps == 1


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


@functools.lru_cache(maxsize=4096)
def plan(cfg: FusedConfig | BwdConfig, batch: int, n: int) -> Plan:
    """Resolve ``cfg`` for a (batch, n) problem: one chunk per chain when a tile holds the chain."""
    segs = math.ceil(n / cfg.L)
    store = min(cfg.store, cfg.L)  # a column pair needs L >= 2
    if segs <= cfg.seg:
        s = _pow2_at_least(segs)
        r = max(1, min(cfg.seg // s, _pow2_at_least(batch)))
        return Plan(r, s, cfg.L, 0, 1, s * cfg.L, min(cfg.M1, cfg.L), cfg.warps, cfg.stages, cfg.maxpass, store,
                    maxnreg=cfg.maxnreg)
    core = (cfg.seg - 2 * cfg.H) * cfg.L
    if cfg.seq == 2 and segs <= 2 * cfg.seg and cfg.seg >= 2 and math.ceil(n / core) > 2:
        return Plan(1, cfg.seg, cfg.L, 0, 1, 2 * cfg.seg * cfg.L, cfg.M1, cfg.warps, cfg.stages, cfg.maxpass, store,
                    seq=2, maxnreg=cfg.maxnreg or SEQ2_MAXNREG)
    return Plan(1, cfg.seg, cfg.L, cfg.H, math.ceil(n / core), core, cfg.M1, cfg.warps, cfg.stages, cfg.maxpass,
                store, maxnreg=cfg.maxnreg)


# exact kernel: segments per chunk and persistent grid cap
EXACT_S = 64
EXACT_L = 16
EXACT_WARPS = 4
_SCRATCH: dict[tuple[str, int], torch.Tensor] = {}


@functools.lru_cache(maxsize=16)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _exact_programs(batch: int, device: torch.device) -> int:
    """Persistent grid of the exact kernels: 4 programs per SM (they exit at once on unflagged chains)."""
    if device.type == "cuda":
        return max(1, min(batch, 4 * _sm_count(device.index if device.index is not None else 0)))
    return max(1, min(batch, 4))


def _flag_block(nch: int) -> int:
    """Chains whose flags an exact kernel reads per vector load: 1024 flags (FB x FP2) at most."""
    return max(1, 1024 // _pow2_at_least(nch))


def _exact_launch(batch: int, n: int, nch: int, device: torch.device,
                  fb: int | None = None) -> tuple[int, int, dict[str, int]]:
    """(programs, chunks per chain, constexpr and launch options) of an exact kernel for ``batch`` chains of ``n``
    positions with ``nch`` flags each; ``fb`` overrides the chains read per flag load (``_flag_block``)."""
    meta = {"S": EXACT_S, "L": EXACT_L, "FP2": _pow2_at_least(nch), "FB": fb or _flag_block(nch),
            "num_warps": EXACT_WARPS}
    return _exact_programs(batch, device), math.ceil(n / (EXACT_S * EXACT_L)), meta


def launch_fwd_exact(a: torch.Tensor, kk: torch.Tensor, zv: torch.Tensor, gv: torch.Tensor, flags: torch.Tensor,
                     nch: int, uniform: bool, fb: int | None = None) -> None:
    """Recompute G exactly for the chains flagged in ``flags`` (B, nch) int32 (``_fwd_exact_kernel``): a (B, N),
    kk / zv / gv as the forward passes them (k argument, z and G viewed as float). ``fb`` as in
    :func:`_exact_launch` (the dev script times FB 1 against the default)."""
    batch, n = a.shape
    nprog, maxch, meta = _exact_launch(batch, n, nch, a.device, fb)
    _core._fwd_exact_kernel[(nprog,)](
        a, kk, zv, gv, flags, _scratch(a.device, nprog, maxch), batch, n, nch, nprog, maxch,
        K_SCALAR=uniform, FORCE=0, **meta,
    )


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Output allocation (tests replace it with a NaN-filled one so an unwritten element fails)."""
    return torch.empty(*shape, dtype=dtype, device=device)


def _scratch(device: torch.device, nprog: int, maxch: int) -> torch.Tensor:
    key = (str(device), 0)
    need = nprog * maxch * 4
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < need:
        buf = torch.empty(max(need, 4096), dtype=torch.float32, device=device)
        _SCRATCH[key] = buf
    return buf


def _reg_cap(p: Plan) -> dict[str, int]:
    """The ``maxnreg`` launch option when the plan caps registers (GPU only: the interpreter has no registers)."""
    return {"maxnreg": p.maxnreg} if p.maxnreg and not interpreting() else {}


def _check_inputs(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> bool:
    check_device(a, "triton_fused")
    if a.dtype not in DTYPES:
        raise ValueError(
            f"a: dtype {a.dtype} is not supported by triton_fused (float32, bfloat16, float16); "
            "use impl='thomas' for float64 or complex a"
        )
    if k.is_complex():
        raise ValueError("k: complex couplings are not supported by triton_fused; use impl='thomas'")
    if a.dim() != 2 or k.shape != (a.shape[0], max(a.shape[1] - 1, 0)):
        raise ValueError(f"a, k: expected (B, N) and (B, N-1), got {tuple(a.shape)} and {tuple(k.shape)}")
    if z.dtype != torch.complex64 or z.shape != (a.shape[0],):
        raise ValueError(f"z: expected complex64 of shape ({a.shape[0]},), got {z.dtype} {tuple(z.shape)}")
    return is_uniform(k)


def _k_arg(a: torch.Tensor, k: torch.Tensor, uniform: bool) -> torch.Tensor:
    """k as the kernels take it: the stride-0 view itself when uniform (they read its one value through
    the data pointer: no copy, no launch), else contiguous (any real dtype: the kernels upcast)."""
    if k.numel() == 0:
        return torch.zeros(1, dtype=torch.float32, device=a.device)
    return k if uniform else k.contiguous()


def forward(
    a: torch.Tensor,
    k: torch.Tensor,
    z: torch.Tensor,
    config: FusedConfig | None = None,
    tol: float = DEFAULT_TOL,
    force_exact: bool = False,
    return_flags: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """G (B, N) complex64 from a (B, N), k (B, N-1), z (B,) complex64 (no autograd; see module docs)."""
    uniform = _check_inputs(a, k, z)
    cfg = config or FusedConfig()
    a = a.contiguous()
    batch, n = a.shape
    g = _empty(batch, n, dtype=torch.complex64, device=a.device)
    if batch == 0:
        return (g, torch.zeros(0, 1, dtype=torch.int32, device=a.device)) if return_flags else g
    gv = torch.view_as_real(g)
    zv = torch.view_as_real(z.contiguous())
    kk = _k_arg(a, k, uniform)
    p = plan(cfg, batch, n)
    flags = torch.empty(batch, p.NCH, dtype=torch.int32, device=a.device)
    if force_exact:
        flags.fill_(1)
    elif p.seq == 2:
        _core._fwd_seq2_kernel[(p.programs(batch),)](
            a, kk, zv, gv, flags, batch, n, float(tol),
            R=p.R, S=p.S, L=p.L, M1=p.M1, MAXPASS=p.maxpass, K_SCALAR=uniform, STORE=p.store,
            GATHER=p.gather, num_warps=p.warps, num_stages=p.stages, **_reg_cap(p),
        )
    else:
        _core._fwd_fast_kernel[(p.programs(batch),)](
            a, kk, zv, gv, flags, batch, n, p.NCH, p.CORE, float(tol),
            R=p.R, S=p.S, L=p.L, H=p.H, M1=p.M1, MAXPASS=p.maxpass, K_SCALAR=uniform, STORE=p.store,
            GATHER=p.gather, num_warps=p.warps, num_stages=p.stages, **_reg_cap(p),
        )
    launch_fwd_exact(a, kk, zv, gv, flags, p.NCH, uniform)
    return (g, flags) if return_flags else g


def vjp(
    a: torch.Tensor,
    k: torch.Tensor,
    z: torch.Tensor,
    g: torch.Tensor,
    grad_g: torch.Tensor,
    need_s: bool = False,
    config: BwdConfig | None = None,
    tol: float = DEFAULT_TOL,
    gtol: float = 2e-5,
    force_exact: bool = False,
    return_flags: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Backward of G = bk_core(a, k, z): returns grad_a = -Re S (B, N) float32, or S (B, N) complex64 when
    ``need_s`` (then grad_z = conj(S.sum(1))), with S_j = sum_i w_i G_ij G_ji, w = conj(grad_g)."""
    uniform = _check_inputs(a, k, z)
    cfg = config or BwdConfig()
    a = a.contiguous()
    batch, n = a.shape
    out = _empty(batch, n, dtype=torch.complex64 if need_s else torch.float32, device=a.device)
    if batch == 0:
        return (out, torch.zeros(0, 1, dtype=torch.int32, device=a.device)) if return_flags else out
    ov = torch.view_as_real(out) if need_s else out
    gv = torch.view_as_real(g.contiguous())
    gg = torch.view_as_real(grad_g.to(torch.complex64).contiguous())
    zv = torch.view_as_real(z.contiguous())
    kk = _k_arg(a, k, uniform)
    p = plan(cfg, batch, n)
    flags = torch.empty(batch, p.NCH, dtype=torch.int32, device=a.device)
    if force_exact:
        flags.fill_(1)
    else:
        _core._bwd_fast_kernel[(p.programs(batch),)](
            a, kk, zv, gv, gg, ov, flags, batch, n, p.NCH, p.CORE, float(tol), float(gtol),
            R=p.R, S=p.S, L=p.L, H=p.H, M1=p.M1, MAXPASS=p.maxpass, K_SCALAR=uniform, NEED_S=need_s,
            LIN_EXACT=int(cfg.lin_exact), STORE=p.store, GATHER=p.gather,
            num_warps=p.warps, num_stages=p.stages,
        )
    nprog, maxch, meta = _exact_launch(batch, n, p.NCH, a.device)
    _core._bwd_exact_kernel[(nprog,)](
        a, kk, zv, gv, gg, ov, flags, _scratch(a.device, nprog, 2 * maxch), batch, n, p.NCH, nprog, maxch,
        K_SCALAR=uniform, FORCE=0, NEED_S=need_s, **meta,
    )
    return (out, flags) if return_flags else out


class FusedGreen(torch.autograd.Function):
    """G = triton_fused(a, k, z) with the exact O(N) backward w.r.t. a and z (Triton kernels both ways)."""

    @staticmethod
    def forward(ctx, a, z, k, config, bwd_config, tol):  # type: ignore[override]
        g = forward(a, k, z, config=config, tol=tol)
        ctx.save_for_backward(a, z, g)
        ctx.k = k
        ctx.bwd_config = bwd_config
        ctx.tol = tol
        return g

    @staticmethod
    def backward(ctx, grad_g):  # type: ignore[override]
        a, z, g = ctx.saved_tensors
        need_z = ctx.needs_input_grad[1]
        res = vjp(a.detach(), ctx.k, z.detach(), g, grad_g, need_s=need_z, config=ctx.bwd_config, tol=ctx.tol)
        grad_a = grad_z = None
        if need_z:
            grad_z = res.sum(dim=1).conj()
            if ctx.needs_input_grad[0]:
                grad_a = (-res.real).to(a.dtype)
        elif ctx.needs_input_grad[0]:
            grad_a = res.to(a.dtype)
        return grad_a, grad_z, None, None, None, None


def _as_config(cls: type, value: Any) -> Any:
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls.from_dict(value)
    raise ValueError(f"config: expected a {cls.__name__} or a dict, got {type(value).__name__}")


def supports(problem: Any) -> str | None:
    if getattr(problem, "device", "cpu") == "cpu":
        if not interpreting():
            return "Triton kernel: on the CPU only under TRITON_INTERPRET=1"
        if getattr(problem, "elements", 0) > INTERPRETER_MAX_ELEMENTS:
            return f"Triton interpreter: only B*N <= {INTERPRETER_MAX_ELEMENTS} on the CPU"
    if getattr(problem, "complex_a", 0):
        return "complex a is not supported (real a only)"
    return None


@register(
    "triton_fused",
    kind="bk",
    exact=True,
    devices=("cpu", "cuda"),
    dtypes=DTYPES,
    differentiable=True,
    description="fused Triton kernel: tile loads, two-pass forgetting carries + exact fallback, one store",
    available=triton_available,
    supports=supports,
)
def triton_fused(
    a: torch.Tensor,
    k: torch.Tensor,
    z: torch.Tensor,
    config: FusedConfig | dict | None = None,
    bwd_config: BwdConfig | dict | None = None,
    tol: float = DEFAULT_TOL,
    force_exact: bool = False,
) -> torch.Tensor:
    """a (B, N) float32/bf16/fp16, k (B, N-1) real, z (B,) complex64 -> G (B, N) complex64.

    Differentiable w.r.t. a and z. ``config``/``bwd_config`` default to the tuned table for this GPU
    (bkbench.tuning), else the built-in defaults."""
    cfg = _as_config(FusedConfig, config)
    bcfg = _as_config(BwdConfig, bwd_config)
    if cfg is None or bcfg is None:
        from bkbench.tuning import lookup

        t_cfg, t_bcfg = lookup(a, k)
        cfg = cfg or t_cfg
        bcfg = bcfg or t_bcfg
    if force_exact:
        return forward(a, k, z, config=cfg, tol=tol, force_exact=True)
    if torch.is_grad_enabled() and (a.requires_grad or z.requires_grad):
        return FusedGreen.apply(a, z, k, cfg, bcfg, tol)
    return forward(a, k, z, config=cfg, tol=tol)
