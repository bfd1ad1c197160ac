"""``dvpt pretrain-micro``: train the image tower of the offline backbone ``micro``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DvptError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain-micro",
        help="train micro's image tower on emoji renderings (about 10 minutes on a CPU)",
        description="Trains micro's image tower against frozen MiniLM embeddings of emoji names and "
        "writes micro.safetensors + micro.json (recipe, steps, zero-shot accuracies).",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget (default 10)")
    parser.add_argument("--steps", type=int, default=None, help="fixed number of steps (overrides --minutes)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's assets)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backbones import micro, micro_pretrain

    if args.minutes <= 0 and not args.steps:
        raise DvptError(f"--minutes must be positive (got {args.minutes}); or pass --steps N")
    if args.steps is not None and args.steps <= 0:
        raise DvptError(f"--steps must be positive (got {args.steps})")
    config = micro_pretrain.PretrainConfig(
        seed=args.seed, minutes=args.minutes, steps=args.steps, threads=args.threads, batch_size=args.batch_size
    )
    meta = micro_pretrain.train(config, args.out or micro.ASSETS)
    print(json.dumps({"steps": meta["steps"], "zero_shot_base_quick": meta["zero_shot_base_quick"]}, indent=1))
    return 0
