"""Few-shot sampling like Dassl's, and its on-disk cache: re-used unchanged, renewed on change."""
from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from pathlib import Path

import pytest

from datasets_fixtures import BUILDERS
from dvpt.data import DATASETS, fewshot_cache
from dvpt.data.base import DatasetSplits, Datum
from dvpt.data.fewshot_cache import sample_few_shot
from dvpt.data.sampling import subsample_classes


def dassl_reference(items: list[Datum], k: int) -> list[Datum]:
    """Dassl's generate_fewshot_dataset on the global RNG, as described in REFERENCE.md §3."""
    tracker: dict[int, list[Datum]] = defaultdict(list)
    for d in items:
        tracker[d.label].append(d)
    out: list[Datum] = []
    for group in tracker.values():
        out.extend(random.sample(group, k) if len(group) >= k else group)
    return out


def test_matches_dassl_train_then_val_on_one_stream(tmp_path: Path) -> None:
    loaded = DATASETS.get("dtd").load(BUILDERS["dtd"](tmp_path).root)
    mixed = random.Random(0)  # labels out of order: Dassl groups them by first appearance
    splits = loaded.with_lists(train=mixed.sample(loaded.train, len(loaded.train)),
                               val=mixed.sample(loaded.val, len(loaded.val)))
    assert [d.label for d in splits.train] != sorted(d.label for d in splits.train)
    for seed in (1, 2, 3):
        for shots in (2, 4):  # shots=2: val classes hold exactly 2, which Dassl still samples
            random.seed(seed)
            want_train = dassl_reference(splits.train, shots)
            want_val = dassl_reference(splits.val, min(shots, 4))
            got = sample_few_shot(splits, shots, seed, cache=False)
            assert got.train == want_train and got.val == want_val


def cache_files(splits: DatasetSplits) -> list[Path]:
    return sorted((Path(splits.root) / "split_fewshot_dvpt").glob("*.json"))


@pytest.fixture()
def pets(tmp_path: Path) -> DatasetSplits:
    return DATASETS.get("oxford_pets").load(BUILDERS["oxford_pets"](tmp_path).root)


def test_cache_is_written_once_and_reused(pets: DatasetSplits, monkeypatch: pytest.MonkeyPatch) -> None:
    first = sample_few_shot(pets, 2, 1)
    [path] = cache_files(pets)
    assert path.name.startswith("shot_2-seed_1-")
    obj = json.loads(path.read_text())
    assert obj["dataset"] == "oxford_pets" and len(obj["train"]) == 10 and obj["train"][0][0].startswith("images/")
    mtime = path.stat().st_mtime_ns

    def no_sampling(*_args: object) -> None:
        raise AssertionError("sampled again instead of reading the cache")

    monkeypatch.setattr(fewshot_cache, "draw_splits", no_sampling)
    again = sample_few_shot(DATASETS.get("oxford_pets").load(Path(pets.root).parent), 2, 1)
    assert again.train == first.train and again.val == first.val
    assert path.stat().st_mtime_ns == mtime and cache_files(pets) == [path]


def test_new_file_when_anything_changes(pets: DatasetSplits) -> None:
    sample_few_shot(pets, 2, 1)
    sample_few_shot(pets, 4, 1)
    sample_few_shot(pets, 2, 2)
    sample_few_shot(subsample_classes(pets, "base"), 2, 1)
    sample_few_shot(subsample_classes(pets, "novel"), 2, 1)
    assert len(cache_files(pets)) == 5
    split = Path(pets.root) / "split_zhou_OxfordPets.json"
    obj = json.loads(split.read_text())
    obj["train"] = obj["train"][1:]  # the split content changes -> a new sample
    split.write_text(json.dumps(obj))
    changed = DATASETS.get("oxford_pets").load(Path(pets.root).parent)
    assert changed.fingerprint != pets.fingerprint
    sample_few_shot(changed, 2, 1)
    assert len(cache_files(pets)) == 6


def test_stale_or_damaged_cache_is_resampled(pets: DatasetSplits) -> None:
    first = sample_few_shot(pets, 2, 1)
    [path] = cache_files(pets)
    path.write_text("{broken")
    assert sample_few_shot(pets, 2, 1).train == first.train
    assert json.loads(path.read_text())["key"] in path.name  # rewritten whole


def test_read_only_location_falls_back_to_no_cache(pets: DatasetSplits, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    def refuse(path: Path, obj: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(fewshot_cache, "write_json_atomic", refuse)
    with caplog.at_level(logging.INFO, logger="dvpt.data.fewshot_cache"):
        got = sample_few_shot(pets, 2, 1)
    assert got.train == sample_few_shot(pets, 2, 1, cache=False).train
    assert cache_files(pets) == [] and "not cached" in caplog.text


def test_explicit_cache_dir_and_no_root(pets: DatasetSplits, tmp_path: Path) -> None:
    sample_few_shot(pets, 1, 3, cache_dir=tmp_path / "elsewhere")
    assert len(list((tmp_path / "elsewhere").glob("shot_1-seed_3-*.json"))) == 1 and cache_files(pets) == []
    rootless = pets.with_lists(root=None)
    assert sample_few_shot(rootless, 1, 3).train == sample_few_shot(pets, 1, 3).train
    ghost = pets.with_lists(root=str(tmp_path / "not_there"))
    assert sample_few_shot(ghost, 1, 3).train == sample_few_shot(pets, 1, 3).train
    assert not (tmp_path / "not_there").exists()
    assert sample_few_shot(pets, 0, 1) is pets
