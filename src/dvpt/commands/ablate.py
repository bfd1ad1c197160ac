"""``dvpt ablate``: the dvpt design-choice ablation (base-to-novel), one command.

Example (the table of docs/results.md):
    dvpt ablate --datasets emoji-animals,emoji-food --seeds 1,2,3 -o runs/ablation
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..experiments.ablation import Plan, run_plan, select_rows, write_outputs

    plan = Plan(rows=select_rows(args.spec, args.rows), datasets=args.datasets, seeds=args.seeds,
                output=Path(args.output), backbone=args.backbone, overrides=args.overrides, threads=args.threads)
    records = run_plan(plan)
    print(write_outputs(plan, records), file=sys.stdout, end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ablate", help="ablate dvpt's design choices (base-to-novel)", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=_names, required=True, help="comma-separated registered datasets")
    parser.add_argument("--seeds", type=_seeds, default=[1, 2, 3], help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--spec", default="ablation", help="ablation (the results table) | tune (the default search)")
    parser.add_argument("--rows", type=_names, help="only these rows (slugs), e.g. coop,full-defaults")
    parser.add_argument("--backbone", default="micro")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="override a config key in every run, e.g. --set optim.epochs=5")
    parser.add_argument("--output", "-o", required=True, help="folder of the run folders, table.md, ablation.json")
    parser.set_defaults(func=run)
