"""``dvpt eval``: evaluate a trained run folder on a dataset's test split (or its base/novel half)."""
from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from ..engine.lock import RunLock
    from ..engine.restore import load_run_config

    load_run_config(args.run_dir)  # a run folder, before a lock file is put into it
    with RunLock(args.run_dir, "eval", read_only_ok=True):  # no trainer replaces the checkpoint while it is read
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from ..data.sampling import subsample_classes
    from ..engine.restore import restore_method

    session, method, _ = restore_method(args.run_dir)
    options = dict(session.cfg.data.options)
    if args.domain:
        options["domain"] = args.domain
    splits = session.load_dataset(args.dataset, args.root, options)
    splits = subsample_classes(splits, args.subset)
    method.set_classnames(splits.classnames, splits.templates)
    method.set_dataset(splits.name)
    result = session.evaluate(method, splits.test)
    print(json.dumps({"run": str(args.run_dir), "dataset": splits.name, "subset": args.subset,
                      "accuracy": result.accuracy, "num_images": result.num_images}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluate a trained run on a dataset", description=__doc__)
    parser.add_argument("run_dir", help="a run folder written by `dvpt train`")
    parser.add_argument("--dataset", help="dataset to evaluate on (default: the run's)")
    parser.add_argument("--root", help="its root (default: the run's)")
    parser.add_argument("--domain", help="dataset domain option (emoji: color | line)")
    parser.add_argument("--subset", choices=["all", "base", "novel"], default="all")
    parser.set_defaults(func=run)
