"""Offline SASS of the ``triton_fused`` kernels (no GPU needed): compile for sm_90 with the ptxas that Triton ships,
then report registers, spills, shared memory and the instruction mix of the straight-line path.

    python bench/triton_fused_sass.py [--n 4096] [--batch 4096] [--scalar] [--maxpass 2] [--json OUT]

``--maxpass 2`` compiles the fast kernel without its extra-pass loop, so the static instruction count is the count
per tile of the common case (two passes). Per element = instructions / (L positions per thread).
Used for docs/triton_fused.md's "work per element" notes; the GPU numbers come from bench/triton_fused_h200.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # compile, never interpret
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from bkbench.kernels.bk import _triton_fused_kernels as kern  # noqa: E402
from bkbench.kernels.bk._triton_fused_config import BwdConfig, FusedConfig, plan  # noqa: E402
from bkbench.kernels.bk.triton_fused import fold_segment  # noqa: E402

BIN = Path(triton.__file__).resolve().parent / "backends" / "nvidia" / "bin"
OPS = ["a_ptr", "sa", "b_ptr", "sb0", "sb1", "bval", "c_ptr", "sc0", "sc1", "cval", "z_ptr", "sz", "zre", "zim"]


def _types(names: list[str], ptr: str = "*fp32") -> dict[str, str]:
    out = {}
    for n in names:
        if n.endswith("_ptr"):
            out[n] = "*i32" if n in ("flag_ptr", "cnt_ptr") else ptr
        elif n in ("bval", "cval", "zre", "zim", "tol", "gtol"):
            out[n] = "fp32"
        else:
            out[n] = "i32"
    return out


def compile_kernel(fn, runtime: list[str], consts: dict[str, object], warps: int, divisible: set[str],
                   maxnreg: int = 0, a_dtype: str = "*fp32"):
    sig = _types(runtime)
    sig["a_ptr"] = a_dtype
    names = list(fn.arg_names)
    for k in consts:
        sig[k] = "constexpr"
    for n in names:
        sig.setdefault(n, "constexpr")
    ordered = {n: sig[n] for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible if n in names}
    const = {(names.index(k),): v for k, v in consts.items()}
    opts = {"num_warps": warps}
    if maxnreg:
        opts["maxnreg"] = maxnreg
    return triton.compile(ASTSource(fn, ordered, const, attrs), target=GPUTarget("cuda", 90, 32), options=opts)


def sass_report(compiled, per_thread_positions: int) -> dict[str, object]:
    cubin = Path("/tmp/bkbench_sass.cubin")
    cubin.write_bytes(compiled.asm["cubin"])
    sass = subprocess.run([str(BIN / "cuobjdump"), "--dump-sass", str(cubin)], capture_output=True, text=True).stdout
    res = subprocess.run([str(BIN / "cuobjdump"), "--dump-resource-usage", str(cubin)], capture_output=True,
                         text=True).stdout
    ops = re.findall(r"^\s+/\*[0-9a-f]{4,6}\*/\s+(?:@!?U?P[0-9T] )?([A-Z0-9_]+)", sass, re.M)
    mix = collections.Counter(ops)
    regs = re.search(r"REG:(\d+)", res)
    local = re.search(r"STACK:(\d+)", res)
    shared = re.search(r"SHARED:(\d+)", res)
    return {"instructions": len(ops), "per_position": round(len(ops) / per_thread_positions, 1),
            "registers": int(regs.group(1)) if regs else None, "stack_bytes": int(local.group(1)) if local else None,
            "spill_instructions": mix.get("LDL", 0) + mix.get("STL", 0),
            "shared_bytes": int(shared.group(1)) if shared else None, "mix": dict(mix.most_common(24))}


def fwd(batch: int, n: int, scalar: bool, maxpass: int, cfg: FusedConfig, fold: bool, km: int | None = None):
    p = plan(cfg, batch, n)
    km = km if km is not None else (0 if scalar else 2)
    runtime = OPS + ["g_ptr", "flag_ptr", "cnt_ptr", "carry_ptr", "B", "N", "NCH", "CORE", "MAXCH", "tol"]
    kernel = kern._fwd_fast_kernel
    if p.persist:  # the persistent grid (FusedConfig.persist): one more argument, the tile count
        runtime.append("NTILE")
        kernel = kern._fwd_persist_kernel
    consts = {"sb1": 1, "sc1": 1,  # Triton specialises an integer argument equal to 1 (unit column strides)
              "R": p.R, "S": p.S, "L": p.L, "H": p.H, "M1": p.M1, "MAXPASS": maxpass, "KM": km, "ZM": 0,
              "STORE": p.store, "GATHER": p.gather, "FOLD": fold, "FP2": 1 << max(0, (p.NCH - 1).bit_length()),
              "XL": fold_segment(p)}
    div = {"a_ptr", "b_ptr", "c_ptr", "g_ptr", "flag_ptr", "sa", "sb0", "sc0", "N"}
    c = compile_kernel(kernel, runtime, consts, p.warps, div, maxnreg=p.maxnreg)
    return p, sass_report(c, p.L * p.R * p.S // (32 * p.warps))


def bwd(batch: int, n: int, scalar: bool, cfg: BwdConfig, fold: bool):
    p = plan(cfg, batch, n)
    runtime = OPS + ["g_ptr", "go_ptr", "o_ptr", "flag_ptr", "cnt_ptr", "carry_ptr", "B", "N", "NCH", "CORE",
                     "MAXCH", "tol", "gtol"]
    consts = {"sb1": 1, "sc1": 1,
              "R": p.R, "S": p.S, "L": p.L, "H": p.H, "M1": p.M1, "MAXPASS": 2, "KM": 0 if scalar else 2, "ZM": 0,
              "NEED_S": False, "LIN_EXACT": cfg.lin_exact, "STORE": p.store, "GATHER": p.gather, "FOLD": fold,
              "FP2": 1 << max(0, (p.NCH - 1).bit_length()), "XL": fold_segment(p, True)}
    div = {"a_ptr", "b_ptr", "c_ptr", "g_ptr", "go_ptr", "o_ptr", "flag_ptr", "sa", "sb0", "sc0", "N"}
    c = compile_kernel(kern._bwd_fast_kernel, runtime, consts, p.warps, div)
    return p, sass_report(c, p.L * p.R * p.S // (32 * p.warps))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--scalar", action="store_true", help="scalar coupling (k a value) instead of tensors b, c")
    ap.add_argument("--maxpass", type=int, default=2)
    ap.add_argument("--config", default="{}", help="FusedConfig fields as JSON")
    ap.add_argument("--no-fold", action="store_true", help="leave the exact path out (what it costs)")
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.backward:
        p, rep = bwd(a.batch, a.n, a.scalar, BwdConfig.from_dict(json.loads(a.config)) if a.config != "{}"
                     else BwdConfig(), not a.no_fold)
    else:
        p, rep = fwd(a.batch, a.n, a.scalar, a.maxpass, FusedConfig.from_dict(json.loads(a.config))
                     if a.config != "{}" else FusedConfig(), not a.no_fold)
    rep["plan"] = repr(p)
    print(json.dumps(rep, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
