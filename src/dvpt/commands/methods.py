"""``dvpt methods``: the registered methods and their options."""
from __future__ import annotations

import argparse
import dataclasses


def run(args: argparse.Namespace) -> int:
    from ..methods import METHODS

    for name, cls in METHODS.items():
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Options)
                         if f.default is not dataclasses.MISSING)
        tower = " [trains through the image tower]" if cls.uses_image_tower else ""
        print(f"{name:<10} {cls.summary}{tower}")
        if args.verbose_options and opts:
            print(f"{'':<10} options: {opts}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("methods", help="list registered methods")
    parser.add_argument("--options", action="store_true", dest="verbose_options", help="show each method's options")
    parser.set_defaults(func=run)
