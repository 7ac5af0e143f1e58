"""CPU sweep behind the lut_green error model: float64 error vs window m over potentials, Re z and Im z,
next to the declared tolerance (kernels/bk/lut_green.py::lut_error_model). Prints a markdown table.

    PYTHONPATH=. python bench/lut_window_sweep.py [--n 300] [--batch 4]

Laplacian couplings (band of H0 + a: [-4, 0] around a = -2, so Re z = -2 is the band centre, 0 the band
edge and 0.5 just outside), a = -2 + potential * randn, seed 0, reference = float64 pivot/dense form.
"""

from __future__ import annotations

import argparse

from bkbench import bk_core
from bkbench.harness.accuracy import relative_error
from bkbench.harness.problems import Problem, make_inputs
from bkbench.harness.reference import reference
from bkbench.kernels.bk.lut_green import lut_error_model

WINDOWS = (0, 2, 4, 8, 16, 32, 48)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    print("| potential | z | " + " | ".join(f"m={m}" for m in WINDOWS) + " | max err/tol |")
    print("|---|---|" + "---:|" * (len(WINDOWS) + 1))
    for potential in (0.0, 0.5, 2.0):
        for z in (-2 + 0.01j, -2 + 0.1j, -2 + 1j, 0.01j, 1j, 0.5 + 0.01j, 0.5 + 0.1j):
            p = Problem(batch=(args.batch,), n=args.n, dtype="float64", potential=potential, z=z)
            inp = make_inputs(p)
            ref = reference(inp)
            errs, worst = [], 0.0
            for m in WINDOWS:
                g = bk_core(inp.a, inp.b, inp.c, inp.z, impl="lut_green", window=m, check=False)
                e = relative_error(g, ref).rel_err
                errs.append(e)
                worst = max(worst, e / lut_error_model(p, {"window": m}))
            zs = f"{z.real:g}{z.imag:+g}j"
            print(f"| {potential:g} | {zs} | " + " | ".join(f"{e:.0e}" for e in errs) + f" | {worst:.2f} |")


if __name__ == "__main__":
    main()
