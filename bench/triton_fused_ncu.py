"""Target for Nsight Compute: one ``triton_fused`` forward configuration, called a few times.

Run under ``ncu`` by ``bench/triton_fused_dev.py --stage ncu`` (which passes ``--launch-skip`` so that the
compiling first call is not profiled)::

    ncu --clock-control none --section WarpStateStats -k regex:_fwd_ --launch-skip 1 --launch-count 1 \
        python3 bench/triton_fused_ncu.py --batch 16384 --n 1024 --config '{"seq": 2}'

``--config`` is a partial ``FusedConfig`` dict (the rest are defaults). Prints the plan it launched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    from bkbench.kernels.bk import triton_fused as tf

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--scalar", action="store_true", help="one scalar coupling instead of per-position k")
    ap.add_argument("--config", default="{}", help="partial FusedConfig as JSON")
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=dev).manual_seed(0)
    a = -2.0 + 0.5 * torch.randn(args.batch, args.n, device=dev, generator=gen)
    if args.scalar:
        k = torch.ones((), device=dev).expand(args.batch, max(args.n - 1, 0))
    else:
        k = torch.ones(args.batch, max(args.n - 1, 0), device=dev)
    z = torch.full((args.batch,), 1j, dtype=torch.complex64, device=dev)
    cfg = tf.FusedConfig.from_dict({**tf.FusedConfig().to_dict(), **json.loads(args.config)})
    for _ in range(args.calls):
        g, flags = tf.forward(a, k, z, config=cfg, return_flags=True)
    if dev == "cuda":
        torch.cuda.synchronize()
    print(json.dumps({"plan": tf.plan(cfg, args.batch, args.n).__dict__, "flagged": int(flags.sum()),
                      "finite": bool(torch.isfinite(torch.view_as_real(g)).all())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
