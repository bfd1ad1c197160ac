"""A generic image-folder dataset: ``--dataset folder --root DIR``.

``DIR/<class>/<images>`` is split per class 50/20/30 with a fixed seed, so every run sees the
same split; ``DIR/{train,val,test}/<class>/`` folders, when present, are used as they are
(``val`` may be absent). A test-only folder (``DIR/test/<class>/`` without ``train/``) is
enough for what trains nothing: ``zeroshot`` and ``dvpt eval``. An optional ``DIR/classnames.txt`` maps a folder name to a readable
class name (lines ``<folder> <name>``). Classes are sorted by folder name. Nothing is written
except the few-shot cache.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..base import DatasetSplits
from .coop_common import (FEWSHOT_DIRNAME, IMAGE_EXTENSIONS, SPLITS, class_names, listdir_visible, make_splits,
                          parse_split, readable, register, split_class_folders, split_fingerprint)

LAYOUT = "DIR/<class>/<images> or DIR/{train,val,test}/<class>/<images>; optional DIR/classnames.txt"


def read_folder_names(path: Path) -> dict[str, str]:
    """``<folder> <readable name>`` lines of an optional ``classnames.txt``."""
    if not path.is_file():
        return {}
    names = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        folder, _, name = line.strip().partition(" ")
        if folder and not name.strip():
            raise DataError(f"{path}:{n}: expected '<folder> <class name>', got {line.strip()!r}")
        if folder:
            names[folder] = name.strip()
    return names


def _class_dirs(path: Path) -> list[str]:
    return [c for c in listdir_visible(path, dirs=True) if c != FEWSHOT_DIRNAME]


def _images(folder: Path) -> list[str]:
    return [f for f in listdir_visible(folder, dirs=False) if Path(f).suffix.lower() in IMAGE_EXTENSIONS]


def _predefined(root: Path, problems: list[str]) -> dict:
    """The split object of ``root/{train,val,test}/<class>/``; classes come from train (from
    test in a test-only folder)."""
    if not (root / "test").is_dir():
        raise DataError(f"{root / 'test'}: missing; with {root / 'train'} present, test/ (and optionally val/) must exist")
    classes = _class_dirs(root / "train") if (root / "train").is_dir() else _class_dirs(root / "test")
    label_of = {c: i for i, c in enumerate(classes)}
    obj: dict = {s: [] for s in SPLITS}
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        for c in _class_dirs(root / split):
            if c not in label_of:
                problems.append(f"{root / split / c}: class {c!r} has no folder in {root / 'train'}; add it or remove this one")
                continue
            files = _images(root / split / c)
            if not files and split == ("train" if (root / "train").is_dir() else "test"):
                problems.append(f"{root / split / c}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            obj[split].extend([f"{split}/{c}/{f}", label_of[c], c] for f in files)
    return obj


def collect(root: Path, problems: list[str], dry_run: bool) -> DatasetSplits | None:
    if not root.is_dir():
        raise DataError(f"--root {root} does not exist or is not a folder; expected {LAYOUT}")
    if (root / "train").is_dir() or ((root / "test").is_dir() and _class_dirs(root / "test")):
        obj = _predefined(root, problems)  # test/ with class folders, not a class named "test"
    else:
        classes = _class_dirs(root)
        if not classes:
            raise DataError(f"{root}: no class folders; expected {LAYOUT}")
        empty = [c for c in classes if not _images(root / c)]
        if empty:
            problems += [f"{root / c}: class folder has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})" for c in empty]
            return None
        obj = split_class_folders(root, extensions=IMAGE_EXTENSIONS)
    if problems:
        return None
    names = read_folder_names(root / "classnames.txt")
    lists = parse_split(obj, root, root, rename=lambda c: names.get(c, readable(c)))
    fingerprint = split_fingerprint({"split": obj, "names": names})
    return make_splits("folder", lists, class_names(lists, root), root, fingerprint)


register("folder", collect, LAYOUT, num_classes=None, dirname=None,
         description="any DIR/<class>/<images> tree (seeded 50/20/30 split unless train/val/test exist)")
