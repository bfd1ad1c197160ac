"""The emoji benchmark: names, class lists, deterministic rendering, splits and the cache."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dvpt.data import DATASETS as REGISTRY
from dvpt.data import emoji
from dvpt.errors import DataError

#: classes per dataset and domain after collapsing variants, dropping near-duplicates and
#: keeping what the font draws (pinned: a change here changes every benchmark number)
EXPECTED_CLASSES = {
    ("emoji-animals", "color"): 152, ("emoji-animals", "line"): 111,
    ("emoji-food", "color"): 133, ("emoji-food", "line"): 104,
    ("emoji-travel", "color"): 217, ("emoji-travel", "line"): 199,
    ("emoji-activities", "color"): 85, ("emoji-activities", "line"): 67,
    ("emoji-objects", "color"): 260, ("emoji-objects", "line"): 196,
    ("emoji-smileys", "color"): 166, ("emoji-smileys", "line"): 138,
    ("emoji-people", "color"): 203, ("emoji-people", "line"): 122,
    ("emoji-symbols", "color"): 217, ("emoji-symbols", "line"): 188,
    ("emoji-flags", "color"): 269,
}  # fmt: skip

SMALL = emoji.RenderRecipe(seed=3, counts=(("train", 2), ("val", 1), ("test", 1)))


@pytest.fixture(scope="module")
def activities(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cache")
    return root, emoji.load_emoji("emoji-activities", root, "color", recipe=SMALL)


def test_every_group_is_a_registered_dataset() -> None:
    assert set(emoji.DATASETS) <= set(REGISTRY.names())
    assert len(emoji.DATASETS) == 9
    assert REGISTRY.get("emoji-flags").templates[0] == "an emoji of the flag of {}."


@pytest.mark.parametrize("key", sorted(EXPECTED_CLASSES))
def test_class_counts_and_no_class_twice(key: tuple[str, str]) -> None:
    names = [emoji.classname(e) for e in emoji.concepts(*key)]
    assert len(names) == EXPECTED_CLASSES[key]
    assert len(set(names)) == len(names)


def test_variants_are_collapsed() -> None:
    people = {emoji.classname(e) for e in emoji.concepts("emoji-people")}
    assert "technologist" in people and "man technologist" not in people
    assert "person running" in people and "woman running" not in people
    for dataset in emoji.DATASETS:
        for entry in emoji.concepts(dataset):
            assert not any(c in emoji.SKIN_TONES for c in entry.codepoints), entry


def test_names_are_readable_and_flags_lose_their_prefix() -> None:
    smileys = [emoji.classname(e) for e in emoji.concepts("emoji-smileys")]
    assert smileys[0] == "grinning face"
    flags = {emoji.classname(e) for e in emoji.concepts("emoji-flags")}
    assert "Germany" in flags and "flag: Germany" not in flags


def test_near_duplicates_are_dropped() -> None:
    symbols = {emoji.classname(e) for e in emoji.concepts("emoji-symbols")}
    assert "Japanese “not free of charge” button" in symbols
    assert "Japanese “free of charge” button" not in symbols
    assert "magnifying glass tilted right" not in {emoji.classname(e) for e in emoji.concepts("emoji-objects")}


def test_shipped_duplicate_table_matches_minilm() -> None:
    from dvpt.backbones.micro import load_text_tower

    text = load_text_tower()
    assert emoji.find_duplicates("emoji-symbols", text.encode_text) == emoji.duplicate_table()["emoji-symbols"]


def test_rendering_is_deterministic_per_seed() -> None:
    entries = emoji.concepts("emoji-food")[:5]
    a = emoji.render_images(entries, "color", "train", 3, SMALL)
    b = emoji.render_images(entries, "color", "train", 3, SMALL)
    c = emoji.render_images(entries, "color", "train", 3, emoji.RenderRecipe(seed=4))
    assert a.dtype == torch.uint8 and a.shape == (15, 3, 64, 64)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_an_image_does_not_depend_on_its_batch() -> None:
    entries = emoji.concepts("emoji-food")[:4]
    together = emoji.render_images(entries, "line", "test", 2, SMALL)
    alone = emoji.render_images(entries[2:3], "line", "test", 2, SMALL)
    assert torch.equal(together[4:6], alone)


def test_split_streams_are_disjoint() -> None:
    seeds = {
        emoji.image_seed(0, "color", split, "grinning face", i) for split in ("train", "val", "test", "pretrain") for i in range(20)
    }
    assert len(seeds) == 80
    entries = emoji.concepts("emoji-smileys")[:3]
    train = emoji.render_images(entries, "color", "train", 2, SMALL)
    test = emoji.render_images(entries, "color", "test", 2, SMALL)
    assert all(not torch.equal(x, y) for x in train for y in test)


def test_line_glyphs_take_the_ink_colour() -> None:
    entries = emoji.concepts("emoji-animals", "line")[:2]
    images = emoji.render_images(entries, "line", "val", 2, SMALL).float()
    assert images.std(dim=(2, 3)).mean() > 5  # not a blank background


def test_load_renders_files_once(activities) -> None:
    root, splits = activities
    assert splits.num_classes == EXPECTED_CLASSES[("emoji-activities", "color")]
    assert len(splits.train) == 2 * splits.num_classes
    assert len(splits.val) == len(splits.test) == splits.num_classes
    assert sorted({d.label for d in splits.test}) == list(range(splits.num_classes))
    first = splits.train[0]
    assert first.classname == splits.classnames[first.label] and first.domain == "color"
    with Image.open(first.path) as img:
        assert img.size == (64, 64) and img.mode == "RGB"
    stamp = os.stat(first.path).st_mtime_ns
    again = emoji.load_emoji("emoji-activities", root, "color", recipe=SMALL)
    assert again.train == splits.train
    assert os.stat(first.path).st_mtime_ns == stamp
    assert not [p for p in Path(splits.root).rglob("*.tmp")]


def test_files_hold_the_rendered_pixels(activities) -> None:
    _, splits = activities
    entry = emoji.concepts("emoji-activities")[splits.test[7].label]
    expected = emoji.render_images([entry], "color", "test", 1, SMALL)[0].permute(1, 2, 0).numpy()
    with Image.open(splits.test[7].path) as img:
        assert np.array_equal(np.asarray(img), expected)


def test_registered_loader_takes_the_domain_option(tmp_path: Path) -> None:
    spec = REGISTRY.get("emoji-flags")
    with pytest.raises(DataError, match="no domain 'line'"):
        spec.load(tmp_path, domain="line")
    assert spec.check(tmp_path) == []


def test_unknown_dataset_is_a_user_error() -> None:
    with pytest.raises(DataError, match="unknown emoji dataset 'emoji-cats'"):
        emoji.load_emoji("emoji-cats")


def test_unwritable_cache_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write the emoji renderings"):
        emoji.load_emoji("emoji-activities", blocker, "color", recipe=SMALL)


def test_default_cache_follows_dvpt_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DVPT_CACHE", str(tmp_path))
    folder = emoji.dataset_dir("emoji-food", "line", None, SMALL)
    assert folder == tmp_path / "emoji" / SMALL.key() / "line" / "emoji-food"
