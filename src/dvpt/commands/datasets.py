"""``dvpt datasets list`` and ``dvpt datasets check --root DIR [--dataset NAME]``.

``check`` exists because a half-extracted archive or a split file from another release
otherwise surfaces as a failure hours into a sweep; it lists every problem at once (path and
fix), counts the images per split when a dataset is fine, and exits 1 if anything is wrong.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError, DvptError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="list registered datasets or check a data folder",
                                   description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="datasets_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _help(parser))
    lister = sub.add_parser("list", help="one line per dataset: name, classes, expected layout")
    lister.set_defaults(func=cmd_list)
    checker = sub.add_parser("check", help="verify a data folder and count images per split")
    checker.add_argument("--root", required=True, help="the folder holding the dataset folders (CoOp's $DATA)")
    checker.add_argument("--dataset", help="check only this dataset (required for folder and custom datasets)")
    checker.add_argument("--open-images", action="store_true", help="also decode every image (slow on large sets)")
    checker.set_defaults(func=cmd_check)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    from ..data import DATASETS

    for name, spec in DATASETS.items():
        classes = "?" if spec.num_classes is None else str(spec.num_classes)
        role = " [target only]" if spec.target_only else ""
        print(f"{name:<16} {classes:>5}  {spec.layout}{role}")
    return 0


def _names_to_check(root: Path, dataset: str | None) -> list[str]:
    from ..data import DATASETS
    from ..data.datasets.coop_common import STANDARD_DIRS

    if dataset:
        if dataset not in DATASETS:
            raise DvptError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS.names())}")
        return [dataset]
    if not root.is_dir():
        raise DataError(f"--root {root} does not exist or is not a folder")
    found = [n for n, d in STANDARD_DIRS.items() if (root / d).is_dir() or root.name == d]
    if not found:
        looked = ", ".join(sorted(set(STANDARD_DIRS.values())))
        raise DataError(f"no dataset folder under {root} (looked for {looked}); pass --dataset NAME for others")
    return sorted(found)


def _unreadable(splits) -> list[str]:
    from ..data.loading import open_image

    problems = []
    for path in sorted({d.path for d in (*splits.train, *splits.val, *splits.test)}):
        try:
            open_image(path)
        except DataError as exc:
            problems.append(str(exc))
    return problems


def check_one(name: str, root: Path, open_images: bool) -> list[str]:
    """Print one dataset's status; return its problems."""
    from ..data import DATASETS

    spec = DATASETS.get(name)
    problems = list(spec.check(root)) if spec.check else []
    splits = None
    if not problems:
        try:
            splits = (spec.peek or spec.load)(root)  # peek: nothing written into the data folder
        except DataError as exc:
            problems.append(str(exc))
    if splits is not None and open_images:
        problems += _unreadable(splits)
    if problems:
        print(f"{name}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
    elif splits is not None:
        print(f"{name}: ok, {splits.num_classes} classes, train {len(splits.train)} / val {len(splits.val)} / "
              f"test {len(splits.test)} images ({splits.root})")
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    root = Path(args.root).expanduser()
    names = _names_to_check(root, args.dataset)
    failed = [name for name in names if check_one(name, root, args.open_images)]
    if failed:
        print(f"{len(failed)} of {len(names)} dataset(s) have problems: {', '.join(failed)}")
        return 1
    print(f"all {len(names)} dataset(s) ok")
    return 0
