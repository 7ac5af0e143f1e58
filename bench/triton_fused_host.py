"""Host (CPU) cost of one ``triton_fused`` call on the GPU: where the launch path spends its time.

    python3 bench/triton_fused_host.py            # $OUT/host.md, $OUT/host_profile.txt (or ./results/)

A call whose host path takes longer than the kernel's device time is launch-bound: back-to-back calls then run at
the host's pace, and a forward + backward of two such calls costs several device times. This script measures, at
a tiny shape (B = 8, N = 256, device time a few µs so the queue never fills):

  host per call   perf_counter over 2000 back-to-back calls without synchronising, divided by 2000;
  device per call CUDA events around the same loop (when the host is slower, equals host per call);
  the same for ``forward()`` directly (no registry wrapper / tuning lookup), for each Triton launch alone, and
  for ``torch.empty`` as a yardstick;
  a cProfile of 2000 calls, top 25 functions by own time.
"""

from __future__ import annotations

import cProfile
import functools
import io
import os
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bkbench.harness.tuning import lookup  # noqa: E402
from bkbench.kernels.bk import triton_fused as tf  # noqa: E402
from bkbench.registry import default_registry  # noqa: E402

OUT = Path(os.environ.get("OUT") or "results")
CALLS = 2000


def host_and_device(fn) -> tuple[float, float]:
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    t0 = time.perf_counter()
    for _ in range(CALLS):
        fn()
    t1 = time.perf_counter()
    end.record()
    torch.cuda.synchronize()
    return (t1 - t0) / CALLS * 1e6, start.elapsed_time(end) * 1e3 / CALLS


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda")
    impl = default_registry().get("triton_fused").fn
    rows = []
    for batch, n, scalar in ((8, 256, True), (8, 256, False), (1024, 1024, True)):
        a = torch.randn(batch, n, device=dev)
        k = torch.ones(1, 1, device=dev).expand(batch, n - 1) if scalar else torch.rand(batch, n - 1, device=dev)
        z = torch.full((batch,), 1j, dtype=torch.complex64, device=dev)
        cfg, _ = lookup(a, k)
        cases = {
            "registry fn (lookup + forward)": functools.partial(impl, a, k, z),
            "forward() with config": functools.partial(tf.forward, a, k, z, config=cfg),
            "torch.empty (yardstick)": functools.partial(torch.empty, batch, n, dtype=torch.complex64, device=dev),
        }
        for name, fn in cases.items():
            h, d = host_and_device(fn)
            rows.append((f"B{batch} N{n} {'scalar' if scalar else 'k'}", name, h, d))
            print(rows[-1], flush=True)
    lines = ["# triton_fused host cost per call", "",
             f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, "
             f"triton {__import__('triton').__version__}, {CALLS} back-to-back calls", "",
             "| shape | path | host µs/call | device-paced µs/call |", "|---|---|---|---|"]
    lines += [f"| {s} | {p} | {h:.1f} | {d:.1f} |" for s, p, h, d in rows]
    (OUT / "host.md").write_text("\n".join(lines) + "\n")

    a = torch.randn(8, 256, device=dev)
    k = torch.ones(1, 1, device=dev).expand(8, 255)
    z = torch.full((8,), 1j, dtype=torch.complex64, device=dev)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(CALLS):
        impl(a, k, z)
    prof.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
    (OUT / "host_profile.txt").write_text(s.getvalue())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
