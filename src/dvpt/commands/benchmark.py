"""``dvpt benchmark``: the reported offline runs (presets/benchmark.yaml), one JSON line each."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import comma_list

if TYPE_CHECKING:
    from ..experiments.benchmark import BenchmarkPlan


def run(args: argparse.Namespace) -> int:
    from ..engine.lock import RunLock
    from ..experiments.benchmark import load_plan, with_scales_from
    from ..files import make_folder

    plan = load_plan(quick=args.quick, tuning=args.tuning, protocol=args.protocol, methods=args.methods,
                     seeds=args.seeds, datasets=args.datasets)
    if args.scales_from:
        plan = with_scales_from(plan, Path(args.scales_from))
    output = make_folder(Path(args.output))
    # one benchmark at a time per folder: a second would run the same jobs and interleave its result files
    with RunLock(output, "benchmark", kind="benchmark folder"):
        return _run(args, plan, output)


def _run(args: argparse.Namespace, plan: "BenchmarkPlan", output: Path) -> int:
    from ..engine import io
    from ..experiments.benchmark import (PROTOCOLS, RESULT_FILES, chosen_scales, curve_table, plan_jobs,
                                         run_benchmark, run_budget_curve, run_lr_grid)
    from ..experiments.benchmark_tables import protocol_tables

    if args.lr_grid:
        records = run_lr_grid(plan, output)
        for method, scale in chosen_scales(records).items():
            print(f"{method}: lr x{scale:g}")
        return 0
    if args.epochs:
        print(curve_table(run_budget_curve(plan, args.epochs, output)))
        return 0
    kinds = PROTOCOLS[plan.protocol]
    print(f"dvpt benchmark: {plan.protocol}, {len(plan_jobs(plan))} runs -> "
          + ", ".join(str(output / RESULT_FILES[k]) for k in kinds), file=sys.stderr)
    records = run_benchmark(plan, output, workers=args.workers)
    table = protocol_tables(records)
    io.write_text(output / "summary.md", table + "\n")
    print(table)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("benchmark", help="the reported offline benchmark runs, resumable, one JSON line each",
                            description=__doc__)
    parser.add_argument("--output", "-o", required=True,
                        help="output folder; results.jsonl there collects the runs, re-running resumes")
    parser.add_argument("--protocol", default="base2novel", choices=["base2novel", "crossdataset", "domaingen",
                                                                      "fewshot", "all"],
                        help="base2novel (default; results.jsonl); crossdataset or domaingen (the same transfer runs, "
                             "transfer.jsonl); fewshot (fewshot.jsonl); all")
    parser.add_argument("--quick", action="store_true",
                        help="one dataset (one source and target per transfer table), two seeds, three methods, "
                             "2 epochs, shots 1,2 for few-shot")
    parser.add_argument("--tuning", action="store_true",
                        help="the tuning datasets of presets/benchmark.yaml (never reported) instead of the reported ones")
    parser.add_argument("--datasets", type=comma_list(str),
                        help="comma-separated emoji datasets of base-to-novel (default: the preset's)")
    parser.add_argument("--methods", type=comma_list(str), help="comma-separated methods (default: the preset's)")
    parser.add_argument("--seeds", type=comma_list(int), help="comma-separated seeds (default: the preset's)")
    parser.add_argument("--epochs", type=comma_list(int),
                        help="budget curve: run the plan once per epoch count (e.g. 5,10,20,40) into budget-curve.jsonl")
    parser.add_argument("--lr-grid", action="store_true", dest="lr_grid",
                        help="every method at every lr scale of the rule's grid into tuning.jsonl (use with --tuning), "
                             "then print each method's best scale")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of one torch thread each (default 1: runs in this process)")
    parser.add_argument("--scales-from", metavar="TUNING_JSONL", dest="scales_from",
                        help="each method's best lr scale in this tuning file instead of the preset's lr_scale")
    parser.set_defaults(func=run)
