"""Tiny dataset trees in each reader's exact on-disk layout, for the dataset tests.

Every builder writes a few classes with a few generated images under ``tmp`` (CoOp's
``$DATA``) and returns the root to pass plus what the reader must produce.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

N_TRAIN, N_VAL, N_TEST = 6, 2, 3
_JPEG: dict[int, bytes] = {}


def image_bytes(label: int) -> bytes:
    """A 4x4 JPEG with a colour per label (encoded once, reused)."""
    if label not in _JPEG:
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), ((40 * label) % 256, 80, 160)).save(buf, format="JPEG")
        _JPEG[label] = buf.getvalue()
    return _JPEG[label]


def put_image(path: Path, label: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(label))


@dataclass
class Expected:
    root: Path
    classnames: list[str]
    counts: tuple[int, int, int]  # train, val, test
    label_space_rows: list[int] | None = None


# --------------------------------------------------------------------------- split_zhou datasets

def zhou(dirname: str, image_subdir: str, split_file: str, raw_names: list[str], readable: list[str],
         relpath: Callable[[str, int, str, int], str]) -> Callable[[Path], Expected]:
    """A builder writing ``split_file`` (CoOp's json shape) and the images it lists."""

    def build(tmp: Path) -> Expected:
        ddir = tmp / dirname
        image_dir = ddir / image_subdir if image_subdir else ddir
        obj: dict[str, list] = {"train": [], "val": [], "test": []}
        for label, name in enumerate(raw_names):
            for split, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
                for i in range(n):
                    rel = relpath(name, label, split, i)
                    put_image(image_dir / rel, label)
                    obj[split].append([rel, label, name])
        (ddir / split_file).write_text(json.dumps(obj))
        k = len(raw_names)
        return Expected(tmp, readable, (k * N_TRAIN, k * N_VAL, k * N_TEST))

    return build


def by_class(name: str, label: int, split: str, i: int) -> str:
    return f"{name.replace(' ', '_')}/{split}_{i:03d}.jpg"


def flat(name: str, label: int, split: str, i: int) -> str:
    return f"image_{label:02d}{split}{i:03d}.jpg"


def cars(name: str, label: int, split: str, i: int) -> str:
    return f"{'cars_test' if split == 'test' else 'cars_train'}/{label:02d}{split}{i:03d}.jpg"


def sun(name: str, label: int, split: str, i: int) -> str:
    return f"{name[0]}/{name.replace(' ', '_')}/sun_{split}{i:03d}.jpg"


# --------------------------------------------------------------------------- other layouts

def fgvc(tmp: Path) -> Expected:
    ddir = tmp / "fgvc_aircraft"
    variants = ["707-320", "727-200", "A300B4", "Boeing 717", "Cessna 172"]
    ddir.mkdir(parents=True)
    (ddir / "variants.txt").write_text("\n".join(variants) + "\n")
    for split, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
        lines = []
        for label, v in enumerate(variants):
            for i in range(n):
                image_id = f"{label}{split[:2]}{i:03d}"
                put_image(ddir / "images" / f"{image_id}.jpg", label)
                lines.append(f"{image_id} {v}")
        (ddir / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return Expected(tmp, variants, (5 * N_TRAIN, 5 * N_VAL, 5 * N_TEST))


WNIDS = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
         ("n01491361", "tiger shark"), ("n01494475", "hammerhead shark"), ("n01496331", "electric ray"),
         ("n01498041", "stingray"), ("n01514668", "rooster")]


def write_classnames(ddir: Path, pairs: list[tuple[str, str]]) -> None:
    ddir.mkdir(parents=True, exist_ok=True)
    (ddir / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in pairs))


def class_tree(image_dir: Path, folders: list[str], n: int, ext: str = "JPEG") -> None:
    for label, folder in enumerate(folders):
        for i in range(n):
            put_image(image_dir / folder / f"{folder}_{i:03d}.{ext}", label)


def imagenet(tmp: Path) -> Expected:
    ddir = tmp / "imagenet"
    pairs = WNIDS[:5]
    write_classnames(ddir, pairs)
    class_tree(ddir / "images" / "train", [w for w, _ in pairs], N_TRAIN)
    class_tree(ddir / "images" / "val", [w for w, _ in pairs], N_TEST)
    return Expected(tmp, [n for _, n in pairs], (5 * N_TRAIN, 5 * N_TEST, 5 * N_TEST))


def imagenetv2(tmp: Path) -> Expected:
    ddir = tmp / "imagenetv2"
    pairs = WNIDS[:5]
    write_classnames(ddir, pairs)
    class_tree(ddir / "imagenetv2-matched-frequency-format-val", [str(i) for i in range(5)], 5, "jpeg")
    return Expected(tmp, [n for _, n in pairs], (25, 0, 25))


def subset(dirname: str, image_subdir: str, rows: list[int]) -> Callable[[Path], Expected]:
    """ImageNet-Sketch/-A/-R: the full classnames.txt, folders for ``rows`` only."""

    def build(tmp: Path) -> Expected:
        ddir = tmp / dirname
        write_classnames(ddir, WNIDS)
        class_tree(ddir / image_subdir, [WNIDS[r][0] for r in rows], 5, "jpg")
        (ddir / image_subdir / "README.txt").write_text("not a class\n")
        identity = rows == list(range(len(WNIDS)))
        return Expected(tmp, [WNIDS[r][1] for r in rows], (5 * len(rows), 0, 5 * len(rows)),
                        None if identity else rows)

    return build


def folder(tmp: Path) -> Expected:
    root = tmp / "my_images"
    names = ["cat", "dog", "red_fox", "snow_owl", "zebra"]
    for label, c in enumerate(names):
        for i in range(10):
            put_image(root / c / f"{i:02d}.png", label)
    (root / c / "notes.txt").write_text("ignored: not an image\n")
    (root / "classnames.txt").write_text("snow_owl snowy owl\n")
    return Expected(root, ["cat", "dog", "red fox", "snowy owl", "zebra"], (25, 10, 15))


BUILDERS: dict[str, Callable[[Path], Expected]] = {
    "caltech101": zhou("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                       ["accordion", "airplanes", "Faces", "crocodile_head", "leopard"],
                       ["accordion", "airplane", "face", "crocodile head", "leopard"], by_class),
    "dtd": zhou("dtd", "images", "split_zhou_DescribableTextures.json",
                ["banded", "blotchy", "braided", "bubbly", "bumpy"],
                ["banded", "blotchy", "braided", "bubbly", "bumpy"], by_class),
    "eurosat": zhou("eurosat", "2750", "split_zhou_EuroSAT.json",
                    ["AnnualCrop", "Forest", "Highway or Road", "SeaLake", "River"],
                    ["Annual Crop Land", "Forest", "Highway or Road", "Sea or Lake", "River"], by_class),
    "food101": zhou("food-101", "images", "split_zhou_Food101.json",
                    ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare"],
                    ["apple pie", "baby back ribs", "baklava", "beef carpaccio", "beef tartare"], by_class),
    "oxford_pets": zhou("oxford_pets", "images", "split_zhou_OxfordPets.json",
                        ["abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle"],
                        ["abyssinian", "american bulldog", "american pit bull terrier", "basset hound", "beagle"], flat),
    "stanford_cars": zhou("stanford_cars", "", "split_zhou_StanfordCars.json",
                          ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012",
                           "Acura TL Type-S 2008", "Acura TSX Sedan 2012"],
                          ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012",
                           "Acura TL Type-S 2008", "Acura TSX Sedan 2012"], cars),
    "oxford_flowers": zhou("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                           ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
                            "english marigold"],
                           ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
                            "english marigold"], flat),
    "sun397": zhou("sun397", "SUN397", "split_zhou_SUN397.json",
                   ["abbey", "airplane cabin", "outdoor apartment building", "alley", "amphitheater"],
                   ["abbey", "airplane cabin", "outdoor apartment building", "alley", "amphitheater"], sun),
    "ucf101": zhou("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                   ["Apply_Eye_Makeup", "ApplyLipstick", "Archery", "Baby_Crawling", "Balance_Beam"],
                   ["Apply Eye Makeup", "Apply Lipstick", "Archery", "Baby Crawling", "Balance Beam"], by_class),
    "fgvc_aircraft": fgvc,
    "imagenet": imagenet,
    "imagenetv2": imagenetv2,
    "imagenet_sketch": subset("imagenet-sketch", "images", list(range(len(WNIDS)))),
    "imagenet_a": subset("imagenet-adversarial", "imagenet-a", [1, 2, 4, 6, 7]),
    "imagenet_r": subset("imagenet-rendition", "imagenet-r", [0, 3, 5, 6]),
    "folder": folder,
}
