"""Splits generated from annotation files (Pets, Flowers, Cars, SUN397, UCF101) when the
``split_zhou_*.json`` file is missing: CoOp's rules, written once, read back identically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io as scipy_io  # a dev dependency (pyproject: dev, datasets)

from datasets_fixtures import put_image
from dvpt.data import DATASETS
from dvpt.data.datasets.annotation_splits import scalar, trainval_split
from dvpt.errors import DataError


def load(name: str, root: Path):
    return DATASETS.get(name).load(root)


def assert_generated_once(name: str, root: Path, split_file: Path, counts: tuple[int, int, int]):
    """Loads, checks the counts and that train/val/test are disjoint and cover each class, that
    the split was written, and that a second load reads the file and gives the same splits."""
    first = load(name, root)
    assert (len(first.train), len(first.val), len(first.test)) == counts
    paths = [{d.path for d in items} for items in (first.train, first.val, first.test)]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert split_file.is_file() and not list(split_file.parent.glob("*.tmp*"))
    written = json.loads(split_file.read_text())
    assert sorted(written) == ["test", "train", "val"]
    again = load(name, root)
    assert [(d.path, d.label, d.classname) for d in again.train] == [(d.path, d.label, d.classname) for d in first.train]
    assert again.fingerprint == first.fingerprint
    return first


def test_trainval_split_is_80_20_per_class_seeded_and_refuses_tiny_classes():
    entries = [[f"a{i}.jpg", 0, "a"] for i in range(10)] + [[f"b{i}.jpg", 1, "b"] for i in range(5)]
    train, val = trainval_split(entries)
    assert sum(e[1] == 0 for e in val) == 2 and sum(e[1] == 1 for e in val) == 1
    assert len(train) == 12 and {e[0] for e in train} | {e[0] for e in val} == {e[0] for e in entries}
    assert trainval_split(entries) == (train, val)  # fixed seed: the same split everywhere
    with pytest.raises(DataError, match="'c'.*2 train image"):
        trainval_split([["c0.jpg", 0, "c"], ["c1.jpg", 0, "c"]])


def test_scalar_unwraps_matlab_fields():
    assert scalar(np.array([[3]], dtype=np.uint8)) == 3
    assert scalar(np.array(["00001.jpg"])) == "00001.jpg"
    assert scalar(np.array([np.array(["AM General Hummer SUV 2000"])], dtype=object)) == "AM General Hummer SUV 2000"


def test_pets_from_annotations(tmp_path: Path):
    ddir = tmp_path / "oxford_pets"
    lines = {"trainval.txt": [], "test.txt": []}
    for label, breed in enumerate(["Abyssinian", "american_bulldog"], 1):
        for i in range(1, 9):
            put_image(ddir / "images" / f"{breed}_{i}.jpg", label)
            lines["trainval.txt" if i <= 5 else "test.txt"].append(f"{breed}_{i} {label} 1 {i}")
    (ddir / "annotations").mkdir()
    for name, rows in lines.items():
        (ddir / "annotations" / name).write_text("\n".join(rows) + "\n")
    splits = assert_generated_once("oxford_pets", tmp_path, ddir / "split_zhou_OxfordPets.json", (8, 2, 6))
    assert splits.classnames == ["abyssinian", "american bulldog"]
    assert {(Path(d.path).name, d.label) for d in splits.test} >= {("Abyssinian_6.jpg", 0), ("american_bulldog_8.jpg", 1)}


def test_pets_without_split_or_annotations_names_both_fixes(tmp_path: Path):
    put_image(tmp_path / "oxford_pets" / "images" / "Abyssinian_1.jpg", 0)
    with pytest.raises(DataError) as err:
        load("oxford_pets", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "oxford_pets" / "annotations" / "trainval.txt") in message
    assert "annotations.tar.gz" in message and "split_zhou_OxfordPets.json" in message and "DATASETS.md" in message
    assert not (tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json").exists()


def test_malformed_annotation_line_names_file_and_line(tmp_path: Path):
    ddir = tmp_path / "oxford_pets"
    put_image(ddir / "images" / "Abyssinian_1.jpg", 0)
    (ddir / "annotations").mkdir()
    (ddir / "annotations" / "trainval.txt").write_text("# header\nAbyssinian_1 one 1 1\n")
    with pytest.raises(DataError, match=r"trainval.txt:2: 'Abyssinian_1 one 1 1' is not"):
        load("oxford_pets", tmp_path)


def test_flowers_from_imagelabels_50_20_30(tmp_path: Path):
    ddir = tmp_path / "oxford_flowers"
    labels = [1] * 10 + [2] * 10
    for index, label in enumerate(labels, 1):
        put_image(ddir / "jpg" / f"image_{index:05d}.jpg", label)
    scipy_io.savemat(ddir / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    (ddir / "cat_to_name.json").write_text(json.dumps({"1": "pink primrose", "2": "hard-leaved pocket orchid"}))
    splits = assert_generated_once("oxford_flowers", tmp_path, ddir / "split_zhou_OxfordFlowers.json", (10, 4, 6))
    assert splits.classnames == ["pink primrose", "hard-leaved pocket orchid"]
    assert {d.label for d in splits.test if Path(d.path).name <= "image_00010.jpg"} == {0}


def test_cars_from_devkit_mat_files_with_year_first(tmp_path: Path):
    ddir = tmp_path / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    meta = np.empty((1, 2), dtype=object)
    for i, name in enumerate(names):
        meta[0, i] = np.array([name])
    (ddir / "devkit").mkdir(parents=True)
    scipy_io.savemat(ddir / "devkit" / "cars_meta.mat", {"class_names": meta})

    def annotations(folder: str, count: int, start: int) -> np.ndarray:
        records = np.zeros((1, 2 * count), dtype=[("fname", object), ("class", object)])
        for k in range(2 * count):
            fname = f"{start + k:05d}.jpg"
            put_image(ddir / folder / fname, k % 2)
            records[0, k] = (np.array([fname]), np.array([[k % 2 + 1]], dtype=np.uint8))
        return records

    scipy_io.savemat(ddir / "devkit" / "cars_train_annos.mat", {"annotations": annotations("cars_train", 5, 1)})
    scipy_io.savemat(ddir / "cars_test_annos_withlabels.mat", {"annotations": annotations("cars_test", 3, 1)})
    splits = assert_generated_once("stanford_cars", tmp_path, ddir / "split_zhou_StanfordCars.json", (8, 2, 6))
    assert splits.classnames == ["2000 AM General Hummer SUV", "2012 Acura RL Sedan"]
    assert all(Path(d.path).parent.name == "cars_test" for d in splits.test)
    assert {Path(d.path).name: d.label for d in splits.test}["00002.jpg"] == 1


def test_sun397_from_partitions(tmp_path: Path):
    ddir = tmp_path / "sun397"
    classes = ["/a/abbey", "/b/balcony/interior"]
    (ddir).mkdir()
    (ddir / "ClassName.txt").write_text("\n".join(classes) + "\n")
    train_lines, test_lines = [], []
    for label, folder in enumerate(classes):
        for i in range(8):
            rel = f"{folder}/sun_{i}.jpg"
            put_image(ddir / "SUN397" / rel.lstrip("/"), label)
            (train_lines if i < 5 else test_lines).append(rel)
    (ddir / "Training_01.txt").write_text("\n".join(train_lines) + "\n")
    (ddir / "Testing_01.txt").write_text("\n".join(test_lines) + "\n")
    splits = assert_generated_once("sun397", tmp_path, ddir / "split_zhou_SUN397.json", (8, 2, 6))
    assert splits.classnames == ["abbey", "interior balcony"]


def test_ucf101_from_the_official_lists(tmp_path: Path):
    ddir = tmp_path / "ucf101"
    lists = ddir / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    train_lines, test_lines = [], []
    for label, action in enumerate(["ApplyEyeMakeup", "Archery"]):
        folder = "Apply_Eye_Makeup" if action == "ApplyEyeMakeup" else action
        for g in range(1, 9):
            video = f"v_{action}_g{g:02d}_c01"
            put_image(ddir / "UCF-101-midframes" / folder / f"{video}.jpg", label)
            if g <= 5:
                train_lines.append(f"{action}/{video}.avi {label + 1}")
            else:
                test_lines.append(f"{action}/{video}.avi")
    (lists / "trainlist01.txt").write_text("\n".join(train_lines) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test_lines) + "\n")
    splits = assert_generated_once("ucf101", tmp_path, ddir / "split_zhou_UCF101.json", (8, 2, 6))
    assert splits.classnames == ["Apply Eye Makeup", "Archery"]
    assert json.loads((ddir / "split_zhou_UCF101.json").read_text())["test"][0][0].startswith("Apply_Eye_Makeup/")


def test_check_reports_but_never_writes_a_generated_split(tmp_path: Path):
    ddir = tmp_path / "sun397"
    ddir.mkdir()
    (ddir / "ClassName.txt").write_text("/a/abbey\n")
    rows = []
    for i in range(6):
        put_image(ddir / "SUN397" / "a" / "abbey" / f"sun_{i}.jpg", 0)
        rows.append(f"/a/abbey/sun_{i}.jpg")
    (ddir / "Training_01.txt").write_text("\n".join(rows[:5]) + "\n")
    (ddir / "Testing_01.txt").write_text("\n".join(rows[5:]) + "\n/a/abbey/sun_missing.jpg\n")
    problems = DATASETS.get("sun397").check(tmp_path)
    assert len(problems) == 1 and "sun_missing.jpg: missing" in problems[0]
    assert not (ddir / "split_zhou_SUN397.json").exists()
