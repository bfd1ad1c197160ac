"""The generic ``folder`` dataset: seeded split, predefined splits, readable names, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from datasets_fixtures import put_image
from dvpt.data import DATASETS
from dvpt.errors import DataError


def load(root: Path):
    return DATASETS.get("folder").load(root)


def test_predefined_train_val_test(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for label, c in enumerate(["b_class", "a_class"]):
            for i in range(n):
                put_image(tmp_path / split / c / f"{i}.jpg", label)
    splits = load(tmp_path)
    assert splits.classnames == ["a class", "b class"]  # sorted by folder name
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 4)
    assert all(Path(d.path).parent.name == ("a_class", "b_class")[d.label] for d in splits.test)


def test_split_is_fixed_and_cache_folder_is_not_a_class(tmp_path: Path) -> None:
    for label, c in enumerate(["x", "y"]):
        for i in range(10):
            put_image(tmp_path / c / f"{i}.jpg", label)
    first = load(tmp_path)
    (tmp_path / "split_fewshot_dvpt").mkdir()
    second = load(tmp_path)
    assert first.train == second.train and first.classnames == ["x", "y"]


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        load(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(err.value)
    with pytest.raises(DataError, match="no class folders"):
        load(tmp_path)
    put_image(tmp_path / "full" / "0.jpg", 0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images") as err:
        load(tmp_path)
    assert str(tmp_path / "empty") in str(err.value)


def test_too_small_class_is_named(tmp_path: Path) -> None:
    put_image(tmp_path / "tiny" / "0.jpg", 0)
    for i in range(10):
        put_image(tmp_path / "big" / f"{i}.jpg", 1)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert str(tmp_path / "tiny") in str(err.value)
