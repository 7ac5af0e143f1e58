"""``bkbench premerge --base main``: correctness gate on every implementation + speed of the changed kernels
against the base commit; exit 1 naming the kernel on a failure or a regression (docs/premerge.md)."""

from __future__ import annotations

import argparse

from bkbench.harness.premerge import DEFAULT_SHAPES, DEFAULT_THRESHOLD, parse_shape, render, run_premerge, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "premerge",
        help="pre-merge check: gate all implementations, compare changed kernels' speed with the base commit",
        description="Runs the correctness gate on every BK-core implementation and times every changed kernel "
        "(git diff against the merge base with --base) against the base revision, interleaving the two. "
        "Exit status 1 names the kernel that is wrong or slower; 0 when all is well.",
    )
    p.add_argument("--base", default="main", help="base revision (branch, tag or sha; default main)")
    p.add_argument("--repo", default=".", help="the checkout to test (default: the current directory)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threshold", type=float, default=None,
                   help="half-width of the no-change band: SLOW (exit 1) when the 95 %% CI of the head/base ratio "
                   "lies above 1 + this, FAST below 1 / (1 + this), SAME inside, AMBIGUOUS across an edge "
                   f"(default {DEFAULT_THRESHOLD['cpu']} on the CPU, {DEFAULT_THRESHOLD['cuda']} on CUDA)")
    cpu = " ".join(f"{b}x{n}" for b, n, _ in DEFAULT_SHAPES["cpu"])
    gpu = " ".join(f"{b}x{n}" for b, n, _ in DEFAULT_SHAPES["cuda"])
    p.add_argument("--shape", nargs="+", type=parse_shape, metavar="BxN[:dtype]",
                   help=f"cases to time (default CPU {cpu}, CUDA {gpu}; float32)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved base/head rounds (default 15)")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="an AMBIGUOUS comparison gets --rounds more rounds at a time up to this many (default 3 x "
                        "--rounds)")
    p.add_argument("--block-seconds", type=float, default=0.05, dest="block_s",
                   help="target seconds of one block of back-to-back calls, at least 3 calls (default 0.05)")
    p.add_argument("--gate", choices=("all", "changed", "none"), default="all",
                   help="which implementations the correctness gate checks (default all)")
    p.add_argument("--full-gate", action="store_true", help="include the gate's long N >= 65536 cases")
    p.add_argument("--seeds", type=int, default=2, help="gate seeds per case (default 2)")
    p.add_argument("--impl", nargs="+", default=[], metavar="NAME",
                   help="also time these implementations even if their files did not change")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of the timing workers (default 1 on the CPU: steadier timings)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = run_premerge(base=args.base, repo=args.repo, device=args.device, threshold=args.threshold,
                          shapes=args.shape, rounds=args.rounds, block_s=args.block_s, max_rounds=args.max_rounds,
                          gate=args.gate,
                          gate_quick=not args.full_gate, seeds=args.seeds, impls=args.impl, threads=args.threads)
    render(report)
    if args.json:
        print(f"report written to {write_json(report, args.json)}")
    return 0 if report.passed else 1
