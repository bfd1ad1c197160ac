"""``dvpt sweep``: run a grid of runs (methods x datasets x seeds x ...) from a spec.

Each run is an ordinary run folder under the sweep's output; ``sweep.json`` indexes them.
Running the same command again resumes: finished runs are skipped, interrupted ones resume
from their checkpoint.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the driver stops its workers and marks their runs interrupted


def run(args: argparse.Namespace) -> int:
    from ..errors import DvptError
    from ..sweep import LocalPool, RayPool, load_spec, run_sweep, select

    spec = load_spec(args.spec)
    jobs = select(spec.jobs(args.overrides), args.only)
    if not jobs:
        raise DvptError(f"--only {' '.join(args.only)} matches none of the runs of {spec.source}")
    output = Path(args.output or Path("runs") / spec.name)
    if args.explain:
        from ..sweep.explain import explain, format_checks

        checks = explain(spec, args.overrides)
        print(format_checks(checks))
        return 1 if any(c.drift for c in checks) else 0
    if args.dry_run:
        for job in jobs:
            done = (output / job.name / "metrics.json").is_file()
            print(f"{'done' if done else 'todo'}  {output / job.name}")
        print(f"{len(jobs)} runs", file=sys.stderr)
        return 0
    if args.ray:
        pool = RayPool(args.ray, spec.resources, args.workers)
    else:
        gpus = [g for g in (args.gpus or "").split(",") if g]
        pool = LocalPool(args.workers or 1, gpus)
    signal.signal(signal.SIGTERM, _on_sigterm)
    result = run_sweep(spec, jobs, output, pool)
    print(f"{result.root}: {len(result.skipped)} finished before, {len(result.done)} done now, "
          f"{len(result.failed)} failed (of {result.total}); index: {result.root / 'sweep.json'}")
    for name, info in result.failed.items():
        print(f"  failed {name}: {info['error']}\n         log: {info['log']}")
    return 0 if result.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sweep", help="run a grid of runs locally or on a Ray cluster", description=__doc__)
    parser.add_argument("spec", help="sweep spec YAML, or a shipped one: paper_base2novel, paper_crossdataset, paper_domaingen, paper_fewshot, offline_base2novel")
    parser.add_argument("--output", "-o", help="sweep folder (default: runs/<spec name>)")
    parser.add_argument("--workers", type=int, help="runs at a time (local: default 1; Ray: default what fits)")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto | host:port | ray://host:port | local")
    parser.add_argument("--gpus", help="local pool: comma-separated GPU ids, one per worker slot in turn")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="config key for every run (above the spec's overrides), e.g. --set data.root=/data")
    parser.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="run only the runs whose name matches, e.g. 'base2novel/dtd/*'")
    parser.add_argument("--dry-run", action="store_true", help="list the runs (and which are finished); run nothing")
    parser.add_argument("--explain", action="store_true",
                        help="print each run's recipe beside the official value and its source; exit 1 on drift")
    parser.set_defaults(func=run)
