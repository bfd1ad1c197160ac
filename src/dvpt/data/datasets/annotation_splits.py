"""Split files built from a dataset's own annotation files, when ``split_zhou_*.json`` is missing.

CoOp's loaders create the split the first time they run and write it as the json that every
later run reads. dvpt does the same for the five datasets whose split comes from annotation
files rather than class folders, from the same files and by the same rules:

- Pets, Cars, SUN397, UCF101: the official train(+val) list is cut per class into 80% train
  and 20% val (:func:`trainval_split`); the official test list is kept as it is.
- Flowers 102: every class is cut 50% train / 20% val / 30% test.

CoOp shuffles with whatever state the global RNG had, so the published json files cannot be
regenerated exactly; dvpt's shuffles use the fixed :data:`SPLIT_SEED`, so a generated split is
the same on every machine. Numbers on a generated split are not split-for-split comparable
with papers: for that, download the published json (the error and the docs say where).

A generator is ``generate(dataset_dir, image_dir) -> split object`` (see ``ZhouDataset``);
paths in the object are relative to ``image_dir``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

from ...errors import DataError
from ..base import repeated_names
from .coop_common import DOCS, SPLIT_SEED, camel_to_words, shuffled_cut

Entry = list[Any]  # [relative image path, label, class name]


# --------------------------------------------------------------------------- shared steps

def trainval_split(trainval: Sequence[Entry], p_val: float = 0.2, seed: int = SPLIT_SEED) -> tuple[list[Entry], list[Entry]]:
    """Per class (in order of first appearance): shuffle, the first round(n * p_val) to val,
    the rest to train. A class too small for one val image is an error naming it."""
    by_class: dict[int, list[Entry]] = {}
    for entry in trainval:
        by_class.setdefault(entry[1], []).append(entry)
    rng = random.Random(seed)
    train: list[Entry] = []
    val: list[Entry] = []
    for label, entries in by_class.items():
        n_val = round(len(entries) * p_val)
        if n_val < 1 or n_val == len(entries):
            raise DataError(
                f"class {entries[0][2]!r} (label {label}) has {len(entries)} train image(s): too few to set "
                f"{p_val:.0%} aside for validation; use the published split file instead (see {DOCS})"
            )
        entries = list(entries)
        rng.shuffle(entries)
        val += entries[:n_val]
        train += entries[n_val:]
    return train, val


def split_object(train: list[Entry], val: list[Entry], test: list[Entry]) -> dict:
    return {"train": train, "val": val, "test": test}


def read_lines(path: Path, what: str, fix: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty, non-comment lines of an annotation file;
    a missing file says what to get."""
    if not path.is_file():
        raise DataError(f"{path}: missing ({what}), needed to generate the split; {fix}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [(number, line.strip()) for number, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith("#")]


def malformed(path: Path, number: int, line: str, expected: str) -> DataError:
    return DataError(f"{path}:{number}: {line!r} is not {expected}; re-extract the file from the original archive")


def load_mat(path: Path, fix: str) -> dict:
    """A MATLAB file through scipy (only these generators need it)."""
    if not path.is_file():
        raise DataError(f"{path}: missing, needed to generate the split; {fix}")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"reading {path} needs scipy: `pip install scipy` (or `pip install dvpt[datasets]`)") from None
    try:
        return loadmat(str(path))
    except (ValueError, OSError, TypeError) as exc:
        raise DataError(f"{path}: not a readable MATLAB file ({exc}); re-extract it from the original archive") from None


def scalar(value: Any) -> Any:
    """Unwrap the nested 1-element arrays scipy makes of MATLAB struct fields
    (``array([[3]])`` -> 3, ``array(['00001.jpg'])`` -> '00001.jpg')."""
    import numpy as np

    while isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- the datasets

PETS_FIX = "extract annotations.tar.gz of Oxford-IIIT Pet into the dataset folder"


def pets(dataset_dir: Path, image_dir: Path) -> dict:
    """``annotations/{trainval,test}.txt``: ``<image> <class id 1..37> <species> <breed id>``;
    the class name is the image name without its number (``american_bulldog_12``)."""

    def read(name: str) -> list[Entry]:
        path = dataset_dir / "annotations" / name
        out = []
        for number, line in read_lines(path, "the Pets annotation list", PETS_FIX):
            parts = line.split()
            if len(parts) != 4 or not parts[1].isdigit() or "_" not in parts[0]:
                raise malformed(path, number, line, "'<image> <class id> <species> <breed id>'")
            breed = parts[0].rsplit("_", 1)[0].lower()
            out.append([f"{parts[0]}.jpg", int(parts[1]) - 1, breed])
        return out

    train, val = trainval_split(read("trainval.txt"))
    return split_object(train, val, read("test.txt"))


FLOWERS_FIX = "download imagelabels.mat (VGG's 102 Flowers page) and cat_to_name.json into the dataset folder"


def flowers(dataset_dir: Path, image_dir: Path, p_train: float = 0.5, p_val: float = 0.2) -> dict:
    """``imagelabels.mat`` (label 1..102 of ``image_00001.jpg``, ...) and ``cat_to_name.json``
    (label -> name); each class is cut 50/20/30."""
    from ..jsonfiles import read_json

    labels = load_mat(dataset_dir / "imagelabels.mat", FLOWERS_FIX).get("labels")
    if labels is None:
        raise DataError(f"{dataset_dir / 'imagelabels.mat'}: no 'labels' array; re-download it")
    names_path = dataset_dir / "cat_to_name.json"
    if not names_path.is_file():
        raise DataError(f"{names_path}: missing, needed to generate the split; {FLOWERS_FIX}")
    names = read_json(names_path, "class names")
    by_class: dict[int, list[str]] = {}
    for index, label in enumerate(labels.reshape(-1)):
        by_class.setdefault(int(label), []).append(f"image_{index + 1:05d}.jpg")
    rng = random.Random(SPLIT_SEED)
    obj: dict[str, list[Entry]] = {"train": [], "val": [], "test": []}
    for label, files in by_class.items():
        if str(label) not in names:
            raise DataError(f"{names_path}: no name for label {label}; use the cat_to_name.json of CoOp's DATASETS.md")
        cut = shuffled_cut(files, rng, p_train, p_val)
        if not all(cut.values()):
            raise DataError(f"{dataset_dir / 'imagelabels.mat'}: label {label} has {len(files)} image(s), too few to split")
        for split, chosen in cut.items():
            obj[split] += [[f, label - 1, names[str(label)]] for f in chosen]
    return obj


CARS_FIX = "extract car_devkit.tgz (devkit/) and cars_test_annos_withlabels.mat into the dataset folder"


def cars(dataset_dir: Path, image_dir: Path) -> dict:
    """``devkit/cars_meta.mat`` (class names), ``devkit/cars_train_annos.mat`` and
    ``cars_test_annos_withlabels.mat`` (file name, class 1..196 per image). As CoOp, the year
    moves to the front of the name ("2012 Tesla Model S Sedan")."""
    meta = load_mat(dataset_dir / "devkit" / "cars_meta.mat", CARS_FIX).get("class_names")
    if meta is None:
        raise DataError(f"{dataset_dir / 'devkit' / 'cars_meta.mat'}: no 'class_names'; re-extract car_devkit.tgz")
    classnames = []
    for raw in meta.reshape(-1):
        words = str(scalar(raw)).split(" ")
        classnames.append(" ".join([words[-1], *words[:-1]]))

    def read(folder: str, path: Path) -> list[Entry]:
        annotations = load_mat(path, CARS_FIX).get("annotations")
        if annotations is None:
            raise DataError(f"{path}: no 'annotations' array; re-download it")
        out = []
        for record in annotations.reshape(-1):
            label = int(scalar(record["class"])) - 1
            if not 0 <= label < len(classnames):
                raise DataError(f"{path}: class {label + 1} is outside the {len(classnames)} classes of cars_meta.mat")
            out.append([f"{folder}/{scalar(record['fname'])}", label, classnames[label]])
        return out

    train, val = trainval_split(read("cars_train", dataset_dir / "devkit" / "cars_train_annos.mat"))
    return split_object(train, val, read("cars_test", dataset_dir / "cars_test_annos_withlabels.mat"))


SUN_FIX = "extract Partitions.zip of SUN397 (ClassName.txt, Training_01.txt, Testing_01.txt) into the dataset folder"


def sun397(dataset_dir: Path, image_dir: Path) -> dict:
    """``ClassName.txt`` (``/a/abbey``, ``/b/balcony/interior``, ...) gives the labels;
    ``Training_01.txt`` / ``Testing_01.txt`` list ``/a/abbey/sun_x.jpg``. The name drops the
    letter folder and puts a qualifier first ("interior balcony")."""
    classes = [line.lstrip("/") for _, line in read_lines(dataset_dir / "ClassName.txt", "SUN397's class list", SUN_FIX)]
    repeated = repeated_names(classes)
    if repeated:  # the partition lists name a class by its folder: a repeated line would merge two labels
        raise DataError(f"{dataset_dir / 'ClassName.txt'}: class folder(s) {', '.join(map(repr, list(repeated)[:5]))} "
                        f"listed more than once; each line must be unique; {SUN_FIX}")
    labels = {c: i for i, c in enumerate(classes)}

    def name(folder: str) -> str:
        return " ".join(reversed(folder.split("/")[1:]))

    def read(list_name: str) -> list[Entry]:
        path = dataset_dir / list_name
        out = []
        for number, line in read_lines(path, "a SUN397 partition list", SUN_FIX):
            relative = line.lstrip("/")
            folder = relative.rsplit("/", 1)[0] if "/" in relative else ""
            if folder not in labels:
                raise malformed(path, number, line, "an image under a class folder of ClassName.txt")
            out.append([relative, labels[folder], name(folder)])
        return out

    train, val = trainval_split(read("Training_01.txt"))
    return split_object(train, val, read("Testing_01.txt"))


UCF_FIX = "extract UCF101TrainTestSplits-RecognitionTask.zip (ucfTrainTestlist/) into the dataset folder"


def ucf101(dataset_dir: Path, image_dir: Path) -> dict:
    """``ucfTrainTestlist/classInd.txt`` (``1 ApplyEyeMakeup``) and ``trainlist01.txt`` /
    ``testlist01.txt`` (``ApplyEyeMakeup/v_..._c01.avi``): the middle frame of each video is
    ``<Apply_Eye_Makeup>/<video>.jpg``, as in CoOp's midframes archive."""
    lists = dataset_dir / "ucfTrainTestlist"
    labels: dict[str, int] = {}
    class_file = lists / "classInd.txt"
    for number, line in read_lines(class_file, "UCF101's class index", UCF_FIX):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise malformed(class_file, number, line, "'<class id> <ActionName>'")
        labels[parts[1]] = int(parts[0]) - 1

    def read(list_name: str) -> list[Entry]:
        path = lists / list_name
        out = []
        for number, line in read_lines(path, "a UCF101 split list", UCF_FIX):
            video = line.split()[0]
            action, _, filename = video.partition("/")
            if action not in labels or not filename:
                raise malformed(path, number, line, "'<Action>/<video>.avi' with an action of classInd.txt")
            folder = camel_to_words(action)
            out.append([f"{folder}/{Path(filename).stem}.jpg", labels[action], folder])
        return out

    train, val = trainval_split(read("trainlist01.txt"))
    return split_object(train, val, read("testlist01.txt"))
