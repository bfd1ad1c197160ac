"""``dvpt train``: one run of a protocol into a run folder."""
from __future__ import annotations

import argparse
import json
import sys

from ..config.loader import build_config, flags_from_args

#: command-line flag -> dotted config key
FLAG_KEYS = {
    "method": "method",
    "backbone": "backbone",
    "protocol": "protocol",
    "dataset": "data.dataset",
    "root": "data.root",
    "shots": "data.shots",
    "domain": "data.options.domain",
    "seed": "seed",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "device": "device",
    "precision": "precision",
    "threads": "threads",
    "targets": "targets",
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by commands that configure runs (train, demo, sweep)."""
    parser.add_argument("--config", action="append", default=[], metavar="YAML", help="run file(s), later ones win")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override any config key, e.g. --set optim.lr=0.01 --set options.n_ctx=8")
    parser.add_argument("--method", help="registered method (see `dvpt methods`)")
    parser.add_argument("--backbone", help="micro | tiny-random | a CLIP hub id or local folder | "
                        "openclip:<model>[/<tag>] (weights file: --set backbone_checkpoint=PATH)")
    parser.add_argument("--protocol", help="base2novel | all | crossdataset | domaingen | fewshot")
    parser.add_argument("--dataset", help="registered dataset (see `dvpt datasets list`)")
    parser.add_argument("--root", help="dataset root folder")
    parser.add_argument("--shots", type=_shots, help="training images per class; a list like 1,2,4,8,16 for --protocol fewshot")
    parser.add_argument("--domain", help="dataset domain option (emoji: color | line)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", help="auto | fp32 | bf16 | fp16 | fp16-weights")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--targets", type=lambda s: [t for t in s.split(",") if t], help="comma-separated target datasets")


def _shots(text: str) -> int | list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shots takes an integer or a comma-separated list, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def config_from_args(args: argparse.Namespace):
    flags = flags_from_args(args, FLAG_KEYS)
    shots = flags.get("data", {}).get("shots")
    if isinstance(shots, list):
        flags["data"]["shots"] = max(shots)
        flags["data"]["shots_list"] = shots
    return build_config(files=args.config, flags=flags, overrides=args.overrides)


def run(args: argparse.Namespace) -> int:
    from ..engine.runner import run_training

    cfg = config_from_args(args)
    metrics = run_training(cfg, args.output)
    shown = {k: metrics[k] for k in ("method", "dataset", "protocol", "accuracy", "base", "novel", "hm", "output") if k in metrics}
    print(json.dumps(shown, indent=2), file=sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="tune a method on a dataset under a protocol", description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--output", "-o", help="run folder (default: runs/<method>-<dataset>-...)")
    parser.set_defaults(func=run)
