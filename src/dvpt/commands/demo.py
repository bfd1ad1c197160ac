"""``dvpt demo``: base-to-novel on the offline emoji benchmark for every method, one table."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from . import comma_list


def run(args: argparse.Namespace) -> int:
    from ..experiments.demo import load_plan, run_demo, write_outputs

    plan = load_plan(quick=args.quick, datasets=args.datasets, methods=args.methods, seeds=args.seeds,
                     backbone=args.backbone)
    output = Path(args.output or f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"dvpt demo: {len(plan.datasets)} datasets x {len(plan.methods)} methods x {len(plan.seeds)} seeds "
          f"-> {output}", file=sys.stderr)
    records = run_demo(plan, output, args.overrides)
    argv = sys.argv[1:] if sys.argv[1:2] == ["demo"] else ["demo"]  # called as main([...]): no argv
    table = write_outputs(records, output, plan, "dvpt " + shlex.join(argv))
    print(table)
    print(f"\nwrote {output / 'results.json'}, {output / 'results.md'}, {output / 'results.png'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="base-to-novel on the offline emoji benchmark, every method",
                            description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one dataset, four methods, half the epochs (~1 min)")
    parser.add_argument("--output", "-o", help="output folder (default: demo-<time>); re-running it resumes")
    parser.add_argument("--datasets", type=comma_list(str), help="comma-separated emoji datasets")
    parser.add_argument("--methods", type=comma_list(str), help="comma-separated methods")
    parser.add_argument("--seeds", type=comma_list(int), help="comma-separated seeds, e.g. 1,2,3")
    parser.add_argument("--backbone", help="default: micro")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="config override applied to every run")
    parser.set_defaults(func=run)
