"""Shared machinery of the readers for CoOp's dataset layout (``$DATA/<dataset dir>/...``).

Why one helper: eleven readers differ only in folder names, the split file name and a
class-name fix. Each reader module states those facts; reading ``split_zhou_*.json``,
generating a missing split, finding missing files, building ``DatasetSplits`` and the
``check`` listing live here once.

Every reader is a *collector* ``collect(root, problems, dry_run) -> DatasetSplits | None``
that appends each problem it finds (one line naming the path and the fix) instead of stopping
at the first: ``load`` raises one ``DataError`` summarising them, ``check`` returns them all.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ...errors import DataError
from ...registry import DATASETS
from ..base import DatasetSpec, DatasetSplits, Datum, repeated_names
from ..fewshot_cache import DIRNAME as FEWSHOT_DIRNAME  # never read as a class folder
from ..jsonfiles import fingerprint_bytes, read_json, write_json_atomic
from ..templates import ENSEMBLE_TEMPLATES, dataset_templates

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: the seed of a split generated when the split file is missing: fixed, so every run seed
#: shares one split, as CoOp's runs share the json written by the first run.
SPLIT_SEED = 1
DOCS = "docs/datasets.md"
COOP_SPLITS = "CoOp's DATASETS.md (Google Drive links; mirror: HF dataset zhengli97/prompt_learning_dataset)"

Collector = Callable[[Path, list[str], bool], "DatasetSplits | None"]
Lists = dict[str, list[Datum]]

#: registry name -> folder under ``$DATA``; ``dvpt datasets check`` without ``--dataset``
#: looks for these.
STANDARD_DIRS: dict[str, str] = {}


# --------------------------------------------------------------------------- names, folders

def readable(name: str) -> str:
    """The class name as it goes into a prompt: CoOp's builders replace ``_`` by a space."""
    return " ".join(name.replace("_", " ").split())


def camel_to_words(name: str) -> str:
    """``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup`` (UCF101's folder names, as CoOp renames them)."""
    parts = re.findall(r"[A-Z][^A-Z]*", name)
    return "_".join(parts) if parts else name


def listdir_visible(path: Path, dirs: bool | None = None) -> list[str]:
    """Sorted entry names without hidden ones; ``dirs`` True/False keeps folders/files only."""
    out = []
    with os.scandir(path) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if dirs is not None and entry.is_dir() != dirs:
                continue
            out.append(entry.name)
    return sorted(out)


def dataset_dir(root: Path | str, dirname: str) -> Path:
    """``root/dirname`` (root = CoOp's ``$DATA``); ``root`` itself when it is that folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"--root {root} does not exist or is not a folder; point it at the folder that holds "
            f"{dirname}/ (CoOp's $DATA), see {DOCS}"
        )
    candidate = root / dirname
    if candidate.is_dir():
        return candidate
    if root.name == dirname:
        return root
    raise DataError(f"{candidate} not found: --root must be the folder that holds {dirname}/ (CoOp's $DATA); see {DOCS}")


# --------------------------------------------------------------------------- split objects

def parse_split(obj: Any, source: Path, image_dir: Path, rename: Callable[[str], str] | None = None) -> Lists:
    """CoOp's split object ``{train|val|test: [[relative path, label, class name], ...]}``."""
    if not isinstance(obj, dict) or any(not isinstance(obj.get(s), list) for s in SPLITS):
        raise DataError(
            f"{source}: expected a JSON object with lists 'train', 'val' and 'test' of "
            "[image path, label, class name]; re-download the split file or delete it"
        )
    lists: Lists = {}
    base = os.path.normpath(image_dir)
    for split in SPLITS:
        items = []
        for i, entry in enumerate(obj[split]):
            ok = (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                  and isinstance(entry[1], int) and not isinstance(entry[1], bool) and isinstance(entry[2], str))
            if not ok:
                raise DataError(f"{source}: {split}[{i}] = {entry!r} is not [image path, integer label, class name]")
            path = os.path.normpath(os.path.join(base, entry[0].lstrip("/")))
            if os.path.commonpath([base, path]) != base:  # "../" must not lead out of the dataset
                raise DataError(f"{source}: {split}[{i}] path {entry[0]!r} leads outside {image_dir}; a split file "
                                "names images inside the dataset folder")
            name = rename(entry[2]) if rename else entry[2]
            items.append(Datum(str(image_dir / entry[0].lstrip("/")), entry[1], readable(name)))
        lists[split] = items
    return lists


def class_names(lists: Lists, source: Path | str) -> list[str]:
    """Label -> name over all splits; labels must be 0..n-1 with one name each."""
    names: dict[int, str] = {}
    for items in lists.values():
        for d in items:
            if names.setdefault(d.label, d.classname) != d.classname:
                raise DataError(f"{source}: label {d.label} is named both {names[d.label]!r} and {d.classname!r}")
    missing = sorted(set(range(len(names))) - set(names))
    if missing or (names and min(names) < 0):
        raise DataError(f"{source}: labels must be 0..{len(names) - 1}; found {sorted(names)[:10]}...")
    if not names:
        raise DataError(f"{source}: no images listed")
    return [names[i] for i in range(len(names))]  # a name given to two labels is two classes (see make_splits)


def missing_file_problems(lists: Lists, source: Path | str) -> list[str]:
    """One line per listed image that does not exist."""
    seen: set[str] = set()
    out = []
    for split in SPLITS:
        for d in lists.get(split, []):
            if d.path not in seen:
                seen.add(d.path)
                if not os.path.isfile(d.path):
                    out.append(f"{d.path}: missing (listed in {split} of {source}); restore it from the original archive")
    return out


def empty_file_problems(splits: DatasetSplits) -> list[str]:
    """One line per image of 0 bytes or without read permission (cheap; no decoding)."""
    out = []
    for path in sorted({d.path for d in (*splits.train, *splits.val, *splits.test)}):
        try:
            if os.path.getsize(path) == 0:
                out.append(f"{path}: empty file (0 bytes); re-extract it from the original archive")
            elif not os.access(path, os.R_OK):
                out.append(f"{path}: not readable (permissions); fix them with chmod")
        except OSError:
            pass  # a missing file was already reported by the collector
    return out


def split_class_folders(image_dir: Path, seed: int = SPLIT_SEED, p_train: float = 0.5, p_val: float = 0.2,
                        ignored: Iterable[str] = (), rename: Mapping[str, str] | None = None,
                        extensions: frozenset[str] | None = None) -> dict[str, list[list[Any]]]:
    """A per-class shuffled train/val/test split of ``image_dir/<class>/*`` (CoOp's DTD way).

    Classes are the sorted folder names (minus ``ignored``); each gets round(n*p_train) train,
    round(n*p_val) val and the rest test images (see ``shuffled_cut`` for small classes).
    Returns the split-file object with paths relative to ``image_dir``. Classes with fewer
    than 2 images are an error naming every such class at once.
    """
    rng = random.Random(seed)
    skip = set(ignored) | {FEWSHOT_DIRNAME}
    categories = [c for c in listdir_visible(image_dir, dirs=True) if c not in skip]
    if not categories:
        raise DataError(f"{image_dir}: no class folders found; expected {image_dir}/<class name>/<images>")
    obj: dict[str, list[list[Any]]] = {s: [] for s in SPLITS}
    too_small: list[str] = []
    for label, category in enumerate(categories):
        files = [f for f in listdir_visible(image_dir / category, dirs=False)
                 if extensions is None or Path(f).suffix.lower() in extensions]
        cut = shuffled_cut(files, rng, p_train, p_val)
        if not cut["train"] or not cut["test"]:
            too_small.append(f"{image_dir / category} ({len(files)})")
            continue
        name = (rename or {}).get(category, category)
        for split, names in cut.items():
            obj[split].extend([f"{category}/{f}", label, name] for f in names)
    if too_small:
        raise DataError(
            f"{len(too_small)} class folder(s) with fewer than 2 images, too few for one train and one test "
            f"image: {', '.join(too_small)}; add images or remove those folders"
        )
    return obj


def shuffled_cut(items: Sequence[Any], rng: random.Random, p_train: float, p_val: float) -> dict[str, list]:
    """One class's items shuffled, then round(n*p_train) train, round(n*p_val) val and the
    rest test (CoOp's per-class split).

    CoOp asserts at least one test image; where its rounding leaves none (3 images: 2/1/0),
    val, then train, gives one up, so any class of 2 or more images has train and test.
    Larger classes split exactly as CoOp's do.
    """
    items = list(items)
    rng.shuffle(items)
    n = len(items)
    n_train, n_val = round(n * p_train), round(n * p_val)
    if n >= 2 and n_train + n_val >= n:
        if n_val > 0:
            n_val = n - n_train - 1 if n_train < n else 0
        if n_train + n_val >= n:
            n_train = n - n_val - 1
    return {"train": items[:n_train], "val": items[n_train:n_train + n_val], "test": items[n_train + n_val:]}


def split_fingerprint(obj: Any) -> str:
    """Hash of a split object's content (independent of the file's formatting)."""
    return fingerprint_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def make_splits(name: str, lists: Lists, classnames: list[str], root: Path, fingerprint: str,
                label_space_rows: list[int] | None = None, templates: Sequence[str] | None = None) -> DatasetSplits:
    """``DatasetSplits`` with the dataset's templates (custom first, then the ensemble).

    A name given to several classes is kept, one class per label (CoOp's ImageNet list names
    two classes "crane"): refusing it would refuse a standard dataset. It is logged, because
    a prompt shared by all classes gives such classes the same text and so the same score.
    """
    repeated = repeated_names(classnames)
    if repeated:
        log.warning("%s: %d class name(s) name more than one class (labels): %s; they are kept as separate "
                    "classes, shown as 'name [label]'; give them distinct names to tell them apart by text",
                    root, len(repeated), ", ".join(f"{n!r} {where}" for n, where in list(repeated.items())[:5]))
    return DatasetSplits(
        name=name, classnames=classnames, train=lists["train"], val=lists["val"], test=lists["test"],
        templates=list(templates or dataset_templates(name)), root=str(root), label_space_rows=label_space_rows,
        fingerprint=fingerprint,
    )


# --------------------------------------------------------------------------- load / check

def summarize(problems: list[str], name: str, root: Path | str) -> str:
    """One error message for many problems: the first few in full, the count, the fix."""
    if len(problems) == 1:
        return problems[0]
    shown = "; ".join(problems[:3])
    return (f"{len(problems)} problems with dataset {name!r} under {root}: {shown}"
            f"{'; ...' if len(problems) > 3 else ''} (run `dvpt datasets check --root {root} --dataset {name}` to list all)")


def load_with(collect: Collector, name: str, root: Path | str, dry_run: bool = False) -> DatasetSplits:
    """Run a collector; any problem -> one ``DataError``. ``dry_run`` writes no generated split file."""
    if root is None:
        raise DataError(f"dataset {name!r} needs --root DIR (config key data.root): the folder that holds its "
                        f"files; see {DOCS}")
    problems: list[str] = []
    try:
        splits = collect(Path(root).expanduser(), problems, dry_run)
    except DataError as exc:
        problems.append(str(exc))
        splits = None
    if problems or splits is None:
        raise DataError(summarize(problems or [f"{root}: could not read dataset {name!r}"], name, root))
    return splits


def check_with(collect: Collector, root: Path | str) -> list[str]:
    """Every problem of a dataset under ``root``, without writing anything."""
    problems: list[str] = []
    try:
        splits = collect(Path(root).expanduser(), problems, True)
    except DataError as exc:
        return problems + [str(exc)]
    if splits is not None:
        problems += empty_file_problems(splits)
    return problems


def register(name: str, collect: Collector, layout: str, *, num_classes: int | None, dirname: str | None,
             description: str, target_only: bool = False, templates: Sequence[str] | None = None) -> None:
    """Add a reader to ``DATASETS`` (and to the folders ``dvpt datasets check`` looks for).

    ``templates`` defaults to ``dataset_templates(name)``; pass the same tuple to
    ``make_splits`` for a dataset with its own hand-crafted template.
    """
    DATASETS.add(name, DatasetSpec(
        name=name, layout=layout,
        load=lambda root, **_options: load_with(collect, name, root),
        check=lambda root: check_with(collect, root),
        peek=lambda root: load_with(collect, name, root, dry_run=True),
        num_classes=num_classes, templates=tuple(templates or dataset_templates(name)), target_only=target_only,
        description=description,
    ))
    if dirname:
        STANDARD_DIRS[name] = dirname


# --------------------------------------------------------------------------- split_zhou readers

@dataclass(frozen=True)
class ZhouDataset:
    """A dataset read from CoOp's ``split_zhou_<Name>.json`` under ``$DATA/<dirname>/``.

    ``generate(dataset_dir, image_dir)`` builds the split object when the file is missing
    (from the class folders, or from the dataset's annotation files: ``annotation_splits``),
    and it is written atomically, as CoOp does; ``split_recipe`` says how, in the log. Without
    it a missing file is an error that says where to get it. ``rename`` fixes a class name as
    the original loader did.
    """

    name: str
    dirname: str
    image_subdir: str
    split_file: str
    num_classes: int
    description: str
    generate: Callable[[Path, Path], dict] | None = None
    split_recipe: str = "a 50/20/30 per-class split of the class folders"
    rename: Callable[[str], str] | None = None
    #: the hand-crafted template of a dataset not in ``CUSTOM_TEMPLATES`` (ensemble appended).
    template: str | None = None
    extra_layout: tuple[str, ...] = field(default_factory=tuple)

    @property
    def layout(self) -> str:
        parts = [f"{self.image_subdir}/" if self.image_subdir else "", *self.extra_layout, self.split_file]
        return f"{self.dirname}/{{{', '.join(p for p in parts if p)}}}"

    def collect(self, root: Path, problems: list[str], dry_run: bool) -> DatasetSplits | None:
        ddir = dataset_dir(root, self.dirname)
        image_dir = ddir / self.image_subdir
        if not image_dir.is_dir():
            problems.append(f"{image_dir}: image folder missing; expected layout {self.layout}; see {DOCS}")
            return None
        split_path = ddir / self.split_file
        if split_path.is_file():
            obj = read_json(split_path, "split file")
        elif self.generate is None:
            problems.append(f"{split_path}: split file missing; download {self.split_file} from {COOP_SPLITS} into {ddir}")
            return None
        else:
            try:
                obj = self.generate(ddir, image_dir)
            except DataError as exc:  # name the other way out too
                problems.append(f"{split_path}: split file missing and cannot be generated: {exc}; "
                                f"or download {self.split_file} from {COOP_SPLITS}")
                return None
            if not dry_run:
                self._write_generated(split_path, obj)
        lists = parse_split(obj, split_path, image_dir, self.rename)
        problems += missing_file_problems(lists, split_path)
        return make_splits(self.name, lists, class_names(lists, split_path), ddir, split_fingerprint(obj),
                           templates=self.templates)

    @property
    def templates(self) -> tuple[str, ...]:
        return (self.template, *ENSEMBLE_TEMPLATES) if self.template else dataset_templates(self.name)

    def _write_generated(self, path: Path, obj: dict) -> None:
        try:
            write_json_atomic(path, obj)
            log.info("%s: split file missing, generated %s (seed %d) -> %s",
                     self.name, self.split_recipe, SPLIT_SEED, path)
        except OSError as exc:
            log.warning("%s: generated split not saved (%s: %s); it is rebuilt identically on every run",
                        self.name, path, exc)

    def register(self) -> "ZhouDataset":
        register(self.name, self.collect, self.layout, num_classes=self.num_classes, dirname=self.dirname,
                 description=self.description, templates=self.templates)
        return self


def folder_generator(ignored: Iterable[str] = (), rename: Mapping[str, str] | None = None) -> Callable[[Path, Path], dict]:
    """``generate`` for datasets whose images sit in ``<image dir>/<class>/`` (CoOp's 50/20/30)."""
    ignored = tuple(ignored)
    return lambda dataset_dir, image_dir: split_class_folders(image_dir, ignored=ignored, rename=rename)
