"""``triton_fused``: the fused Triton BK-core kernel (forward + exact backward w.r.t. ``a`` and ``z``).

One launch computes G for a tile of chains x segments with coalesced tile loads; the pivot recursions run on
register columns, carries between segments come from a two-pass "forgetting" scheme with an a-posteriori error
bound, and G leaves in one interleaved complex64 store (``_triton_fused_kernels``). Chains whose carries do not
converge to the bound (near-real z, long memory, a zero pivot) are flagged and recomputed exactly — prefix
products of Möbius matrices, exact for any z — in the same launch (the fold). No host synchronisation.

Two entry points:

- :func:`call`, used by :func:`bkbench.bk_core`: the user's inputs as they are (``a`` (B, N) float32 / bf16 /
  fp16, ``b``, ``c`` (B, N-1) tensors of any real dtype and strides or numbers, ``z`` a number or a per-chain
  tensor); ``b * c`` and every cast happen in registers (``_triton_fused_launch.Operands``).
- :func:`triton_fused` (the registry calling convention, the "bare kernel"): ``a`` (B, N), ``k`` (B, N-1) real
  (a stride-0 view of one value is read once), ``z`` (B,) complex64.

Output complex64 (B, N). Not supported (declared, so the gate skips those cases and ``bk_core`` says so): complex
``a``, complex couplings, float64. Options: ``config`` (a :class:`FusedConfig` or dict), ``bwd_config``, ``tol``
(carry tolerance, relative error of G), ``force_exact`` (every chain through the exact kernel — for tests).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from bkbench.kernels.bk._cplx_triton import HAS_TRITON, check_device, interpreting, triton_available
from bkbench.kernels.bk._triton_fused_bound import BoundForward, BoundGradForward, BoundVjp, as_input_dtypes, grads_of
from bkbench.kernels.bk._triton_fused_config import SEQ2_MAXNREG, BwdConfig, FusedConfig, Plan, plan
from bkbench.kernels.bk._triton_fused_launch import (
    K_TENSOR_SQUARED,
    K_TENSOR_TENSOR,
    K_TENSOR_VALUE,
    K_VALUE,
    Z_COMPLEX_TENSOR,
    Z_REAL_TENSOR,
    Z_VALUE,
    Operands,
    Stream,
    chunks,
    counters,
    flags,
    from_kernel_convention,
    launch,
    pow2_at_least,
    scratch,
)
from bkbench.kernels.bk._triton_fused_tables import lookup
from bkbench.registry import register

if HAS_TRITON:
    from bkbench.kernels.bk import _triton_fused_exact as _exact
    from bkbench.kernels.bk import _triton_fused_kernels as _kern

__all__ = ["BwdConfig", "FusedConfig", "Plan", "SEQ2_MAXNREG", "bind", "call", "forward", "plan", "triton_fused", "vjp"]

# Largest B * N accepted under the CPU interpreter (it runs the kernels element by element in numpy).
INTERPRETER_MAX_ELEMENTS = 8192
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
DEFAULT_TOL = 2e-7
DEFAULT_GTOL = 2e-5  # the backward's tolerance on |G| growth (vjp_operands)
# tile of the stand-alone exact kernels (force_exact): segments x positions per chunk, warps
EXACT_S = 64
EXACT_L = 16
EXACT_WARPS = 4


def _reg_cap(p: Plan) -> tuple[tuple[str, int], ...]:
    """The ``maxnreg`` launch option when the plan caps registers (GPU only: the interpreter has no registers)."""
    return (("maxnreg", p.maxnreg),) if p.maxnreg and not interpreting() else ()


def fold_segment(p: Plan, backward: bool = False) -> int:
    """XL: the segment length of the exact path folded into the fast kernels (``_fold_exact_fwd``): short, so the
    rarely run exact path does not raise the kernel's register count (offline ptxas, sm_90, one-warp tiles:
    forward 127 registers without the fold, 156 with it at XL 16, 123 at XL 8; backward 115 without, 139 at XL 8,
    96 at XL 4)."""
    return min(p.L, 4 if backward else 8)


def fold_chunks(p: Plan, n: int, backward: bool = False) -> int:
    """Chunks (of S x XL positions) of the fold's exact sweeps: the scratch rows' length (MAXCH)."""
    return chunks(n, p.S * fold_segment(p, backward))


@functools.lru_cache(maxsize=1024)
def _fwd_meta(p: Plan, km: int, zm: int, fold: bool) -> tuple[tuple[str, Any], ...]:
    """Constants and launch options of the forward kernel for a plan (a tuple: hashable, built once)."""
    meta: tuple[tuple[str, Any], ...] = (("R", p.R), ("S", p.S), ("L", p.L))
    if p.seq != 2:
        meta += (("H", p.H),)
    meta += (("M1", p.M1), ("MAXPASS", p.maxpass), ("KM", km), ("ZM", zm), ("STORE", p.store),
             ("GATHER", p.gather), ("FOLD", fold))
    if p.seq != 2:
        meta += (("FP2", pow2_at_least(p.NCH)),)
    meta += (("XL", fold_segment(p)),)
    return meta + (("num_warps", p.warps), ("num_stages", p.stages)) + _reg_cap(p)


@functools.lru_cache(maxsize=1024)
def _bwd_meta(p: Plan, km: int, zm: int, need_s: bool, lin_exact: int, fold: bool) -> tuple[tuple[str, Any], ...]:
    return (("R", p.R), ("S", p.S), ("L", p.L), ("H", p.H), ("M1", p.M1), ("MAXPASS", p.maxpass), ("KM", km),
            ("ZM", zm), ("NEED_S", need_s), ("LIN_EXACT", lin_exact), ("STORE", p.store), ("GATHER", p.gather),
            ("FOLD", fold), ("FP2", pow2_at_least(p.NCH)), ("XL", fold_segment(p, True)),
            ("num_warps", p.warps), ("num_stages", p.stages))


def _exact_meta(km: int, zm: int, need_s: bool | None = None) -> tuple[tuple[str, Any], ...]:
    meta: tuple[tuple[str, Any], ...] = (("S", EXACT_S), ("L", EXACT_L), ("KM", km), ("ZM", zm))
    if need_s is not None:
        meta += (("NEED_S", need_s),)
    return meta + (("num_warps", EXACT_WARPS),)


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Output allocation (tests replace it with a NaN-filled one so an unwritten element fails)."""
    return torch.empty(*shape, dtype=dtype, device=device)


def _check_operands(ops: Operands) -> None:
    if ops.a.device.type != "cuda":
        check_device(ops.a, "triton_fused")
    if ops.a.dtype not in DTYPES:
        raise ValueError(
            f"a: dtype {str(ops.a.dtype).replace('torch.', '')} is not supported by triton_fused (float32, "
            "bfloat16, float16); use impl='thomas' for float64 or complex a"
        )
    for name, t in (("b", ops.b), ("c", ops.c)):
        if t is not None and t.is_complex():
            raise ValueError(f"{name}: complex couplings are not supported by triton_fused; use impl='thomas'")


def forward_operands(ops: Operands, config: FusedConfig, tol: float = DEFAULT_TOL, force_exact: bool = False,
                     fold: bool = True, return_flags: bool = False) -> Any:
    """G (B, N) complex64 of ``ops`` (no autograd). One launch; ``force_exact``: every chain through the exact
    kernel; ``fold=False`` leaves flagged chains as the fast path wrote them (the dev script times the fold);
    ``return_flags``: also the (B, chunks) int32 flags of the fast path."""
    _check_operands(ops)
    batch, n = ops.batch, ops.n
    dev = ops.a.device
    where = Stream.current(dev)
    g = _empty(batch, n, dtype=torch.complex64, device=dev)
    if batch == 0:
        return (g, torch.zeros(0, 1, dtype=torch.int32, device=dev)) if return_flags else g
    gv = torch.view_as_real(g)
    args = ops.args()
    if force_exact:
        maxch = chunks(n, EXACT_S * EXACT_L)
        launch(_exact._fwd_exact_kernel, batch, args + (gv, scratch(where, batch * maxch * 4), n, maxch),
               _exact_meta(ops.km, ops.zm), where)
        return (g, torch.ones(batch, 1, dtype=torch.int32, device=dev)) if return_flags else g
    p = plan(config, batch, n)
    kernel, programs, meta, tail, maxch = fwd_launch_spec(p, ops.km, ops.zm, batch, n, tol, fold, device=dev)
    flag = (torch.empty(batch, p.NCH, dtype=torch.int32, device=dev) if return_flags
            else flags(where, batch, p.NCH))
    common = (gv, flag, counters(where, batch), scratch(where, batch * maxch * 4))
    launch(kernel, programs, args + common + tail, meta, where)
    return (g, flag) if return_flags else g


def fwd_launch_spec(p: Plan, km: int, zm: int, batch: int, n: int, tol: float = DEFAULT_TOL, fold: bool = True, *,
                    device: torch.device) -> tuple[Any, int, tuple[tuple[str, Any], ...], tuple[Any, ...], int]:
    """How the fast forward of plan ``p`` is launched: (kernel, programs, constants and launch options, the
    arguments after the operands and the four buffers (G, flags, counters, scratch), MAXCH: chunks per scratch
    row). ``device``: where it runs (the size of a persistent grid)."""
    maxch = fold_chunks(p, n)
    meta = _fwd_meta(p, km, zm, fold)
    if p.seq == 2:
        return _kern._fwd_seq2_kernel, p.programs(batch), meta, (batch, n, maxch, float(tol)), maxch
    tail = (batch, n, p.NCH, p.CORE, maxch, float(tol))
    if p.persist:
        tiles = p.programs(batch)
        programs = min(tiles, p.persist * processors(device))
        return _kern._fwd_persist_kernel, programs, meta, tail + (tiles,), maxch
    return _kern._fwd_fast_kernel, p.programs(batch), meta, tail, maxch


@functools.lru_cache(maxsize=64)
def processors(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (a persistent grid's unit); 2 elsewhere (the interpreter runs
    programs one after the other: two make every program loop)."""
    if device.type != "cuda":
        return 2
    return torch.cuda.get_device_properties(device).multi_processor_count


def vjp_operands(ops: Operands, g: torch.Tensor, grad_g: torch.Tensor, need_s: bool, config: BwdConfig,
                 tol: float = DEFAULT_TOL, gtol: float = DEFAULT_GTOL, force_exact: bool = False, fold: bool = True,
                 return_flags: bool = False) -> Any:
    """Backward of G = bk_core(ops): grad_a = -Re S (B, N) float32, or S (B, N) complex64 when ``need_s``
    (then grad_z = conj(S.sum(1))), with S_j = sum_i w_i G_ij G_ji, w = conj(grad_g). One launch."""
    _check_operands(ops)
    batch, n = ops.batch, ops.n
    dev = ops.a.device
    where = Stream.current(dev)
    out = _empty(batch, n, dtype=torch.complex64 if need_s else torch.float32, device=dev)
    if batch == 0:
        return (out, torch.zeros(0, 1, dtype=torch.int32, device=dev)) if return_flags else out
    ov = torch.view_as_real(out) if need_s else out
    gv = torch.view_as_real(g.contiguous())
    gg = torch.view_as_real(grad_g.to(torch.complex64).contiguous())
    args = ops.args()
    if force_exact:
        maxch = chunks(n, EXACT_S * EXACT_L)
        launch(_exact._bwd_exact_kernel, batch, args + (gv, gg, ov, scratch(where, batch * maxch * 8), n, maxch),
               _exact_meta(ops.km, ops.zm, need_s), where)
        return (out, torch.ones(batch, 1, dtype=torch.int32, device=dev)) if return_flags else out
    p = plan(config, batch, n)
    maxch = fold_chunks(p, n, backward=True)
    flag = (torch.empty(batch, p.NCH, dtype=torch.int32, device=dev) if return_flags
            else flags(where, batch, p.NCH))
    launch(_kern._bwd_fast_kernel, p.programs(batch),
           args + (gv, gg, ov, flag, counters(where, batch), scratch(where, batch * maxch * 8), batch, n, p.NCH,
                   p.CORE, maxch, float(tol), float(gtol)),
           _bwd_meta(p, ops.km, ops.zm, need_s, int(config.lin_exact), fold), where)
    return (out, flag) if return_flags else out


# --------------------------------------------------------------------------------------------------------
# the registry calling convention (bare kernel): a (B, N), k (B, N-1), z (B,) complex64
# --------------------------------------------------------------------------------------------------------


def _configs(ops: Operands, config: Any, bwd_config: Any) -> tuple[FusedConfig, BwdConfig]:
    cfg = _as_config(FusedConfig, config)
    bcfg = _as_config(BwdConfig, bwd_config)
    if cfg is None or bcfg is None:
        found = lookup(ops.a.device, ops.a.dtype, ops.scalar_coupling, ops.batch, ops.n)
        cfg = cfg or found.fwd
        bcfg = bcfg or found.bwd
    return cfg, bcfg


def forward(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, config: FusedConfig | None = None,
            tol: float = DEFAULT_TOL, force_exact: bool = False, return_flags: bool = False) -> Any:
    """G (B, N) complex64 from a (B, N), k (B, N-1), z (B,) complex64 (no autograd; ``config`` None: the tuned
    table's)."""
    _check_convention(a, k, z)
    ops = from_kernel_convention(a, k, z)
    cfg = config if config is not None else _configs(ops, None, BwdConfig())[0]
    return forward_operands(ops, cfg, tol=tol, force_exact=force_exact, return_flags=return_flags)


def vjp(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor, g: torch.Tensor, grad_g: torch.Tensor,
        need_s: bool = False, config: BwdConfig | None = None, tol: float = DEFAULT_TOL, gtol: float = DEFAULT_GTOL,
        force_exact: bool = False, return_flags: bool = False) -> Any:
    """Backward of G = triton_fused(a, k, z) (see :func:`vjp_operands`)."""
    _check_convention(a, k, z)
    ops = from_kernel_convention(a, k, z)
    cfg = config if config is not None else _configs(ops, FusedConfig(), None)[1]
    return vjp_operands(ops, g, grad_g, need_s, cfg, tol=tol, gtol=gtol, force_exact=force_exact,
                        return_flags=return_flags)


def _check_convention(a: torch.Tensor, k: torch.Tensor, z: torch.Tensor) -> None:
    if a.dim() != 2 or k.shape != (a.shape[0], max(a.shape[1] - 1, 0)):
        raise ValueError(f"a, k: expected (B, N) and (B, N-1), got {tuple(a.shape)} and {tuple(k.shape)}")
    if k.is_complex():
        raise ValueError("k: complex couplings are not supported by triton_fused; use impl='thomas'")
    if z.dtype != torch.complex64 or z.shape != (a.shape[0],):
        raise ValueError(f"z: expected complex64 of shape ({a.shape[0]},), got {z.dtype} {tuple(z.shape)}")


class FusedGreen(torch.autograd.Function):
    """G = triton_fused(ops) with the exact O(N) backward w.r.t. a and z (Triton kernels both ways). ``a`` (B, N)
    and ``zt`` (B,) (a tensor shift, or None) are the tensors ``ops`` reads, passed here so autograd sees them."""

    @staticmethod
    def forward(ctx, a, zt, ops, cfg, bcfg, tol):  # type: ignore[override]
        g = forward_operands(ops, cfg, tol=tol)
        ctx.save_for_backward(g, ops.a, ops.b, ops.c, ops.z)  # saved: an in-place change before backward is an error
        ctx.ops = ops
        ctx.bcfg = bcfg
        ctx.tol = tol
        ctx.a_dtype = a.dtype
        ctx.z_dtype = zt.dtype if zt is not None else None
        return g

    @staticmethod
    def backward(ctx, grad_g):  # type: ignore[override]
        g = ctx.saved_tensors[0]  # (reading them checks that no operand changed in place since the forward)
        need_a, need_z = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        res = vjp_operands(ctx.ops, g, grad_g, need_s=need_z, config=ctx.bcfg, tol=ctx.tol)
        grad_a, grad_z = as_input_dtypes(*grads_of(res, need_a, need_z), ctx.a_dtype, ctx.z_dtype)
        return grad_a, grad_z, None, None, None, None


def _as_config(cls: type, value: Any) -> Any:
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls.from_dict(value)
    raise ValueError(f"config: expected a {cls.__name__} or a dict, got {type(value).__name__}")


def _run(a: torch.Tensor, zt: torch.Tensor | None, ops: Operands, needs_grad: bool, config: Any, bwd_config: Any,
         tol: float, force_exact: bool) -> torch.Tensor:
    cfg, bcfg = _configs(ops, config, bwd_config)
    if force_exact:
        return forward_operands(ops, cfg, tol=tol, force_exact=True)
    if needs_grad:
        return FusedGreen.apply(a, zt, ops, cfg, bcfg, tol)
    return forward_operands(ops, cfg, tol=tol)


def operands_of(args: Any) -> tuple[Operands, torch.Tensor | None]:
    """The :class:`Operands` of a :class:`bkbench.validate.CallArgs` (views, no copies) and its shift tensor (or
    None for a number)."""
    a = args.a if args.a.stride(-1) == 1 else args.a.contiguous()
    b, c = args.b, args.c
    ops_k: dict[str, Any]
    if args.n < 2:
        ops_k = {"km": K_VALUE, "bval": 0.0, "cval": 0.0}
    elif isinstance(b, torch.Tensor) and isinstance(c, torch.Tensor):
        same = b is c or (b.data_ptr() == c.data_ptr() and b.stride() == c.stride() and b.dtype == c.dtype)
        ops_k = {"km": K_TENSOR_SQUARED, "b": b} if same else {"km": K_TENSOR_TENSOR, "b": b, "c": c}
    elif isinstance(b, torch.Tensor) or isinstance(c, torch.Tensor):
        t, v = (b, c) if isinstance(b, torch.Tensor) else (c, b)
        ops_k = {"km": K_TENSOR_VALUE, "b": t, "cval": _real(v, "b" if t is c else "c")}
    else:
        ops_k = {"km": K_VALUE, "bval": _real(b, "b") * _real(c, "c"), "cval": 1.0}
    z = args.z
    if isinstance(z, torch.Tensor):
        zv = torch.view_as_real(z) if z.is_complex() else z
        return Operands(a, zm=Z_COMPLEX_TENSOR if z.is_complex() else Z_REAL_TENSOR, z=zv, **ops_k), z
    return Operands(a, zm=Z_VALUE, zre=z.real, zim=z.imag, **ops_k), None


def call(args: Any, needs_grad: bool = False, config: FusedConfig | dict | None = None,
         bwd_config: BwdConfig | dict | None = None, tol: float = DEFAULT_TOL, force_exact: bool = False
         ) -> torch.Tensor:
    """G (B, N) complex64 for a :class:`bkbench.validate.CallArgs` (the public call's inputs as views): b, c and z
    reach the kernel as they are (module docs). Differentiable w.r.t. a and a tensor z when ``needs_grad``."""
    ops, zt = operands_of(args)
    return _run(args.a, zt, ops, needs_grad, config, bwd_config, tol, force_exact)


def vjp_call(args: Any, g: torch.Tensor, grad_g: torch.Tensor, need_a: bool, need_z: bool,
             config: FusedConfig | dict | None = None, bwd_config: BwdConfig | dict | None = None,
             tol: float = DEFAULT_TOL, force_exact: bool = False) -> tuple[Any, Any]:
    """(grad_a (B, N) | None, grad_z (B,) complex64 | None) of G = call(args) for the cotangent ``grad_g``."""
    ops, _ = operands_of(args)
    _, bcfg = _configs(ops, config, bwd_config)
    return grads_of(vjp_operands(ops, g, grad_g, need_s=need_z, config=bcfg, tol=tol, force_exact=force_exact),
                    need_a, need_z)


def bind(args: Any, needs_grad: bool = False, config: Any = None, bwd_config: Any = None, tol: float = DEFAULT_TOL,
         force_exact: bool = False) -> Any:
    """The forward of this call's signature with the data left open (``_triton_fused_bound.BoundForward``; with
    ``needs_grad``, a ``BoundGradForward`` whose autograd node runs the bound backward), kept by
    ``bkbench.bound_calls`` for later calls of the same signature; None when such calls take the full path (options,
    N < 2, an empty batch, ``a`` with a column stride or leading dims). ``args`` must be the user's own tensors
    (``bound_calls`` checks it)."""
    if force_exact or config is not None or bwd_config is not None or tol != DEFAULT_TOL or not _bindable(args):
        return None
    ops = _bind_operands(args)
    cfg, bcfg = _configs(ops, None, None)
    p = plan(cfg, args.batch, args.n)
    kernel, programs, meta, tail, maxch = fwd_launch_spec(p, ops.km, ops.zm, args.batch, args.n, tol,
                                                          device=args.a.device)
    fwd = BoundForward(kernel=kernel, programs=programs, meta=meta, tail=tail, nch=p.NCH,
                       scratch_floats=args.batch * maxch * 4, **_bound_operands(ops, args))
    return BoundGradForward(fwd, _bound_vjp(ops, args, bcfg, tol)) if needs_grad else fwd


def bind_vjp(args: Any, config: Any = None, bwd_config: Any = None, tol: float = DEFAULT_TOL,
             force_exact: bool = False) -> Any:
    """The backward of this call's signature with the data left open (``_triton_fused_bound.BoundVjp``: what
    :func:`vjp_call` computes), or None as :func:`bind`."""
    if force_exact or bwd_config is not None or tol != DEFAULT_TOL or not _bindable(args):
        return None
    ops = _bind_operands(args)
    return _bound_vjp(ops, args, _configs(ops, None, None)[1], tol)


def _bindable(args: Any) -> bool:
    """``args.a`` is the (B, N) view of the user's ``a`` (leading dims flattened), unit column stride."""
    return args.a.stride(1) == 1 and args.n >= 2 and args.batch > 0


def _bind_operands(args: Any) -> Operands:
    ops, _ = operands_of(args)
    if ops.km == K_TENSOR_SQUARED and args.b is not args.c:
        # operands_of saw one buffer twice; another call of this signature may bring two
        ops = Operands(args.a, K_TENSOR_TENSOR, b=args.b, c=args.c, zm=ops.zm, z=ops.z, zre=ops.zre, zim=ops.zim)
    return ops


def _bound_operands(ops: Operands, args: Any) -> dict[str, Any]:
    operand_args = ops.args()
    return {"km": ops.km, "zm": ops.zm, "tensor_is_b": isinstance(args.b, torch.Tensor),
            "a_stride": operand_args[1], "b_strides": operand_args[3:5], "c_strides": operand_args[7:9],
            "z_stride": operand_args[11], "batch": args.batch, "n": args.n, "lead": tuple(args.lead),
            "device": args.a.device,
            "alloc": lambda *shape, **kw: _empty(*shape, **kw)}


def _bound_vjp(ops: Operands, args: Any, bcfg: BwdConfig, tol: float) -> Any:
    p = plan(bcfg, args.batch, args.n)
    maxch = fold_chunks(p, args.n, backward=True)
    metas = {need_s: _bwd_meta(p, ops.km, ops.zm, need_s, int(bcfg.lin_exact), True) for need_s in (False, True)}
    tail = (args.batch, args.n, p.NCH, p.CORE, maxch, float(tol), float(DEFAULT_GTOL))
    return BoundVjp(kernel=_kern._bwd_fast_kernel, programs=p.programs(args.batch), metas=metas, tail=tail,
                    nch=p.NCH, scratch_floats=args.batch * maxch * 8, **_bound_operands(ops, args))


def _real(x: Any, name: str) -> float:
    if isinstance(x, complex):
        raise ValueError(f"{name}: complex couplings are not supported by triton_fused; use impl='thomas'")
    return float(x)


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
    description="fused Triton kernel: tile loads, two-pass forgetting carries, exact fallback folded in, one store",
    available=triton_available,
    supports=supports,
    call=call,
    vjp=vjp_call,
    bind=bind,
    bind_vjp=bind_vjp,
    extra_checks="bkbench.harness.gate_tuned:gate_checks",  # the gate checks every tuned launch config of this device
    tuner="bkbench.kernels.bk._triton_fused_tables",  # tuned tables: shape buckets and GPU identities of impl="auto"
    fallback_rank={"cuda": 0},
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
    (``_triton_fused_tables``), else the built-in defaults."""
    _check_convention(a, k, z)
    ops = from_kernel_convention(a, k, z)
    needs_grad = torch.is_grad_enabled() and (a.requires_grad or z.requires_grad)
    return _run(a, z, ops, needs_grad, config, bwd_config, tol, force_exact)
