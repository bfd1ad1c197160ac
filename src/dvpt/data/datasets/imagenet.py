"""ImageNet-1k (CoOp layout): ``images/{train,val}/<wnid>/`` plus CLIP's ``classnames.txt``.

Labels follow the sorted wnid folders of ``images/train`` (as CoOp's reader); test and val
are both ``images/val`` (CoOp evaluates on the official val set). The helpers here are shared
with the ImageNet variants, whose labels map back to these rows.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ...errors import DataError
from ..base import DatasetSplits, Datum
from .coop_common import DOCS, dataset_dir, listdir_visible, make_splits, readable, register

DIRNAME = "imagenet"
LAYOUT = f"{DIRNAME}/{{images/train/n*/, images/val/n*/, classnames.txt}}"


def read_classnames(path: Path) -> dict[str, str]:
    """``<wnid> <class name>`` lines, in file order (CLIP's names, one per ImageNet class)."""
    if not path.is_file():
        raise DataError(f"{path}: missing; copy CoOp's classnames.txt (CLIP's ImageNet class names) there, see {DOCS}")
    names: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not name.strip():
            raise DataError(f"{path}:{n}: expected '<wnid> <class name>', got {line.strip()!r}")
        names[wnid] = readable(name)
    return names


def scan_class_folders(split_dir: Path, folders: list[str], label_of: dict[str, int], names: list[str],
                       problems: list[str], digest: "hashlib._Hash") -> list[Datum]:
    """Every visible file of ``split_dir/<folder>/``, labelled; an empty folder is a problem."""
    items: list[Datum] = []
    for folder in folders:
        files = listdir_visible(split_dir / folder, dirs=False)
        if not files:
            problems.append(f"{split_dir / folder}: class folder has no images; restore it from the original archive")
        label = label_of[folder]
        for f in files:
            items.append(Datum(str(split_dir / folder / f), label, names[label]))
            digest.update(f"{folder}/{f}\n".encode())
    return items


def require_dir(path: Path, layout: str, problems: list[str]) -> bool:
    if path.is_dir():
        return True
    problems.append(f"{path}: folder missing; expected layout {layout}; see {DOCS}")
    return False


def collect(root: Path, problems: list[str], dry_run: bool) -> DatasetSplits | None:
    ddir = dataset_dir(root, DIRNAME)
    wnid_names = read_classnames(ddir / "classnames.txt")
    train_dir, val_dir = ddir / "images" / "train", ddir / "images" / "val"
    if not (require_dir(train_dir, LAYOUT, problems) & require_dir(val_dir, LAYOUT, problems)):
        return None
    folders = listdir_visible(train_dir, dirs=True)
    unknown = [f for f in folders if f not in wnid_names]
    problems += [f"{train_dir / f}: wnid {f} is not in {ddir / 'classnames.txt'}" for f in unknown]
    if unknown or not folders:
        if not folders:
            problems.append(f"{train_dir}: no class folders (n*/); expected layout {LAYOUT}")
        return None
    label_of = {f: i for i, f in enumerate(folders)}
    names = [wnid_names[f] for f in folders]
    val_folders = listdir_visible(val_dir, dirs=True)
    problems += [f"{val_dir / f}: class {f} has no train folder in {train_dir}" for f in val_folders if f not in label_of]
    digest = hashlib.sha256((ddir / "classnames.txt").read_bytes())
    train = scan_class_folders(train_dir, folders, label_of, names, problems, digest)
    digest.update(b"\0val\0")
    test = scan_class_folders(val_dir, [f for f in val_folders if f in label_of], label_of, names, problems, digest)
    lists = {"train": train, "val": test, "test": test}
    return make_splits("imagenet", lists, names, ddir, digest.hexdigest()[:16])


register("imagenet", collect, LAYOUT, num_classes=1000, dirname=DIRNAME,
         description="ImageNet-1k (test = val = the official val set)")
