"""``bkbench env``: print the environment header that results are stored with."""

from __future__ import annotations

import argparse
import json

from bkbench.harness.env import environment


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print the environment (provenance) header as JSON")
    p.add_argument("--bandwidth", action="store_true", help="also measure the device copy bandwidth (GPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(environment(measure_bandwidth=args.bandwidth), indent=1, default=str))
    return 0
