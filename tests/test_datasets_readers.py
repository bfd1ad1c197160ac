"""Every registered reader on a tiny tree in its exact layout: names, counts, halves, shots."""
from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import pytest

from datasets_fixtures import BUILDERS, WNIDS, Expected
from dvpt.data import DATASETS
from dvpt.data.fewshot_cache import sample_few_shot
from dvpt.data.sampling import subsample_classes
from dvpt.data.templates import CUSTOM_TEMPLATES, ENSEMBLE_TEMPLATES, IMAGENET_TEMPLATES

STANDARD = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
            "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
TARGET_ONLY = {"imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"}


def test_every_standard_dataset_is_registered_with_a_fixture() -> None:
    assert set(STANDARD) | {"folder"} <= set(DATASETS.names())
    assert set(BUILDERS) == set(STANDARD) | {"folder"}
    for name in STANDARD:
        assert DATASETS.get(name).target_only == (name in TARGET_ONLY)


def test_template_lists() -> None:
    assert len(ENSEMBLE_TEMPLATES) == 7 and len(IMAGENET_TEMPLATES) == 60 == len(set(IMAGENET_TEMPLATES))
    assert IMAGENET_TEMPLATES[0] == "a photo of a {}." and IMAGENET_TEMPLATES[-1] == "itap of the {}."
    assert CUSTOM_TEMPLATES["dtd"] == "{} texture." and CUSTOM_TEMPLATES["eurosat"] == "a centered satellite photo of {}."


@pytest.fixture(params=sorted(BUILDERS))
def built(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Expected]:
    return request.param, BUILDERS[request.param](tmp_path)


def test_reader(built: tuple[str, Expected]) -> None:
    name, exp = built
    spec = DATASETS.get(name)
    splits = spec.load(exp.root)
    assert splits.name == name
    assert splits.classnames == exp.classnames
    assert (len(splits.train), len(splits.val), len(splits.test)) == exp.counts
    assert splits.label_space_rows == exp.label_space_rows
    assert splits.templates[0] == CUSTOM_TEMPLATES.get(name, "a photo of a {}.")
    assert tuple(splits.templates[1:]) == ENSEMBLE_TEMPLATES
    for d in (*splits.train, *splits.val, *splits.test):
        assert os.path.isfile(d.path) and d.classname == splits.classnames[d.label]
    assert splits.fingerprint and spec.load(exp.root).fingerprint == splits.fingerprint
    assert spec.check(exp.root) == []


def test_base_novel_halves(built: tuple[str, Expected]) -> None:
    name, exp = built
    splits = DATASETS.get(name).load(exp.root)
    n = len(exp.classnames)
    m = math.ceil(n / 2)
    base, novel = subsample_classes(splits, "base"), subsample_classes(splits, "novel")
    assert base.classnames == exp.classnames[:m] and novel.classnames == exp.classnames[m:]
    assert {d.label for d in base.test} == set(range(m)) and {d.label for d in novel.test} == set(range(n - m))
    assert len(base.test) + len(novel.test) == len(splits.test)
    rows = exp.label_space_rows  # None: the dataset has its own label space, and so do its halves
    assert base.label_space_rows == (rows[:m] if rows else None)
    assert novel.label_space_rows == (rows[m:] if rows else None)


def test_same_seed_same_shots(built: tuple[str, Expected]) -> None:
    name, exp = built
    splits = DATASETS.get(name).load(exp.root)
    a = sample_few_shot(splits, 2, seed=1, cache=False)
    b = sample_few_shot(splits, 2, seed=1, cache=False)
    c = sample_few_shot(splits, 2, seed=2, cache=False)
    assert a.train == b.train and a.val == b.val
    assert a.train != c.train
    assert Counter(d.label for d in a.train) == {label: 2 for label in range(len(exp.classnames))}
    if name == "imagenet":
        assert a.val == splits.val  # CoOp samples ImageNet's train only
    else:
        assert all(v <= 2 for v in Counter(d.label for d in a.val).values())
    assert a.test == splits.test


def test_imagenet_a_r_rows_point_at_the_imagenet_classes(tmp_path: Path) -> None:
    for name in ("imagenet_a", "imagenet_r"):
        exp = BUILDERS[name](tmp_path)
        splits = DATASETS.get(name).load(exp.root)
        assert splits.label_space_rows == exp.label_space_rows
        for label, row in enumerate(splits.label_space_rows):
            assert splits.classnames[label] == WNIDS[row][1]
            assert all(Path(d.path).parent.name == WNIDS[row][0] for d in splits.test if d.label == label)


def test_dataset_dir_itself_is_accepted_as_root(tmp_path: Path) -> None:
    exp = BUILDERS["oxford_pets"](tmp_path)
    direct = DATASETS.get("oxford_pets").load(exp.root / "oxford_pets")
    assert direct.classnames == exp.classnames and len(direct.train) == exp.counts[0]
