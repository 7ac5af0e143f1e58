"""CPU timings of the three PyTorch implementations at B=64, N in {256, 4096} (float32, z = 1j, Laplacian +
0.5 randn). Times the kernel on normalised inputs (validation outside the timed region) with perf_counter:
at least 5 calls and at least 3 s per case; prints median, p20, p80.

    PYTHONPATH=. python bench/cpu_foundation_timing.py
"""

import statistics
import time

import torch

from bkbench.env import environment
from bkbench.problems import Problem, make_inputs
from bkbench.registry import default_registry
from bkbench.validate import normalize


def main() -> None:
    env = environment()
    print(f"# {env['cpu']} x{env['cpu_count']}, torch {env['torch']} ({env['torch_threads']} threads), "
          f"git {env['git_sha']}, {env['date']}")
    reg = default_registry()
    for n in (256, 4096):
        inp = make_inputs(Problem(batch=(64,), n=n, dtype="float32"))
        norm = normalize(inp.a, inp.b, inp.c, inp.z)
        for name in ("naive_loop", "thomas", "assoc_scan"):
            fn = reg.get(name).fn
            with torch.no_grad():
                fn(norm.a, norm.k, norm.z)  # warm-up
                samples = []
                stop = time.perf_counter() + 3.0
                while time.perf_counter() < stop or len(samples) < 5:
                    t0 = time.perf_counter()
                    fn(norm.a, norm.k, norm.z)
                    samples.append(time.perf_counter() - t0)
            samples.sort()
            p20, p80 = (samples[min(len(samples) - 1, int(f * len(samples)))] for f in (0.2, 0.8))
            print(f"{name:11s} B64 N{n:<5d} f32  median {statistics.median(samples) * 1e3:9.2f} ms"
                  f"  p20 {p20 * 1e3:9.2f}  p80 {p80 * 1e3:9.2f}  n={len(samples)}")


if __name__ == "__main__":
    main()
