"""``dvpt export RUN_DIR -o NAME.dvpt``: a run's tuned prompt as one portable file.

The file holds the method's learnable tensors and, in its header, what is needed to use them
without the run folder or the dataset: method and options, backbone and its identity hash,
class names, templates (see ``dvpt.inference.prompt_file``). ``dvpt predict`` and ``dvpt.load_prompt``
read it.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from ..errors import DvptError
    from ..inference.api import export_prompt
    from ..inference.prompt_file import SUFFIX, read_prompt_file

    run_dir = Path(args.run_dir)
    output = Path(args.output) if args.output else Path(run_dir.resolve().name + SUFFIX)
    if (output.exists() or output.is_symlink()) and not args.force:
        # the file may be the user's own (another run's prompt): never replaced unasked
        raise DvptError(f"{output} already exists; choose another --output, or pass --force to replace it")
    if output.is_dir():
        raise DvptError(f"{output} is a folder; give --output a file name ending in {SUFFIX}")
    path = export_prompt(run_dir, output, partial=args.partial)
    meta = read_prompt_file(path).meta
    size = path.stat().st_size
    print(f"{path}  ({meta.method} on {meta.backbone}, {len(meta.classnames)} classes, {size / 1024:.1f} KiB)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="write a run's tuned prompt to a portable .dvpt file", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `dvpt train -o`")
    parser.add_argument("--output", "-o", help="the .dvpt file to write (default: ./<run folder name>.dvpt)")
    parser.add_argument("--partial", action="store_true",
                        help="export the last saved epoch of a run that did not finish training")
    parser.add_argument("--force", action="store_true", help="replace an existing --output file")
    parser.set_defaults(func=run)
