"""ImageNet-V2, -Sketch, -A and -R (CoOp layout): target-only test sets of ImageNet models.

They are evaluation targets (``target_only``): like CoOp, train and test hold the same images
and val is empty. ImageNet-A and -R cover 200 of the 1000 classes; ``label_space_rows`` maps
each of their labels to its ImageNet row, so a classifier built for ImageNet is evaluated on
exactly their classes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from ..base import DatasetSplits
from .coop_common import dataset_dir, listdir_visible, make_splits, register
from .imagenet import read_classnames, require_dir, scan_class_folders

V2_DIRNAME, V2_IMAGES = "imagenetv2", "imagenetv2-matched-frequency-format-val"
V2_LAYOUT = f"{V2_DIRNAME}/{{{V2_IMAGES}/{{0..999}}/, classnames.txt}}"


def collect_v2(root: Path, problems: list[str], dry_run: bool) -> DatasetSplits | None:
    """Folders ``0..999`` are ImageNet labels in ``classnames.txt`` order."""
    ddir = dataset_dir(root, V2_DIRNAME)
    wnid_names = read_classnames(ddir / "classnames.txt")
    image_dir = ddir / V2_IMAGES
    if not require_dir(image_dir, V2_LAYOUT, problems):
        return None
    folders = [str(i) for i in range(len(wnid_names))]
    present = [f for f in folders if (image_dir / f).is_dir()]
    problems += [f"{image_dir / f}: class folder missing; re-extract {V2_IMAGES}" for f in folders if f not in present]
    names = list(wnid_names.values())
    digest = hashlib.sha256((ddir / "classnames.txt").read_bytes())
    items = scan_class_folders(image_dir, present, {f: int(f) for f in present}, names, problems, digest)
    return make_splits("imagenetv2", {"train": items, "val": [], "test": items}, names, ddir, digest.hexdigest()[:16])


def subset_collector(name: str, dirname: str, image_subdir: str, layout: str) -> Callable[..., DatasetSplits | None]:
    """A reader for ``<dirname>/<image_subdir>/<wnid>/``: labels follow the sorted wnids present,
    ``label_space_rows`` their position in the 1000-line ``classnames.txt``."""

    def collect(root: Path, problems: list[str], dry_run: bool) -> DatasetSplits | None:
        ddir = dataset_dir(root, dirname)
        wnid_names = read_classnames(ddir / "classnames.txt")
        image_dir = ddir / image_subdir
        if not require_dir(image_dir, layout, problems):
            return None
        folders = listdir_visible(image_dir, dirs=True)
        problems += [f"{image_dir / f}: wnid {f} is not in {ddir / 'classnames.txt'}" for f in folders if f not in wnid_names]
        folders = [f for f in folders if f in wnid_names]
        if not folders:
            problems.append(f"{image_dir}: no class folders (n*/); expected layout {layout}")
            return None
        row_of = {wnid: i for i, wnid in enumerate(wnid_names)}
        rows = [row_of[f] for f in folders]
        names = [wnid_names[f] for f in folders]
        digest = hashlib.sha256((ddir / "classnames.txt").read_bytes())
        items = scan_class_folders(image_dir, folders, {f: i for i, f in enumerate(folders)}, names, problems, digest)
        identity = rows == list(range(len(wnid_names)))
        return make_splits(name, {"train": items, "val": [], "test": items}, names, ddir,
                           digest.hexdigest()[:16], label_space_rows=None if identity else rows)

    return collect


register("imagenetv2", collect_v2, V2_LAYOUT, num_classes=1000, dirname=V2_DIRNAME, target_only=True,
         description="ImageNet-V2 matched-frequency (target only)")

for _name, _dir, _sub, _n, _what in (
    ("imagenet_sketch", "imagenet-sketch", "images", 1000, "ImageNet-Sketch (target only)"),
    ("imagenet_a", "imagenet-adversarial", "imagenet-a", 200, "ImageNet-A, 200 classes (target only)"),
    ("imagenet_r", "imagenet-rendition", "imagenet-r", 200, "ImageNet-R, 200 classes (target only)"),
):
    _layout = f"{_dir}/{{{_sub}/n*/, classnames.txt}}"
    register(_name, subset_collector(_name, _dir, _sub, _layout), _layout, num_classes=_n, dirname=_dir,
             target_only=True, description=_what)
