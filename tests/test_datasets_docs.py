"""The two "Adding a dataset" examples of docs/datasets.md run as written."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from datasets_fixtures import put_image
from dvpt.data.datasets import coop_common
from dvpt.registry import Registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"


@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    fresh: Registry = Registry("dataset")
    monkeypatch.setattr(coop_common, "DATASETS", fresh)
    monkeypatch.setattr(coop_common, "STANDARD_DIRS", {})
    section = DOC.read_text().split("## Adding a dataset", 1)[1]
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(block, str(DOC), "exec"), {"__name__": "doc_example"})
    return fresh


def test_doc_examples_register_and_load(registry: Registry, tmp_path: Path) -> None:
    assert registry.names() == ["cub200", "my_csv"]
    birds = tmp_path / "cub200" / "images"
    for label, c in enumerate(["001.Black_footed_Albatross", "002.Laysan_Albatross"]):
        for i in range(4):
            put_image(birds / c / f"{i}.jpg", label)
    cub = registry.get("cub200").load(tmp_path)
    assert cub.classnames == ["Black footed Albatross", "Laysan Albatross"]
    assert cub.templates[0] == "a photo of a {}, a type of bird." and len(cub.templates) == 8
    assert json.loads((tmp_path / "cub200" / "split_zhou_CUB.json").read_text())["train"]
    csv_dir = tmp_path / "my_csv"
    rows = [("train", "a/1.jpg", "apple"), ("test", "a/2.jpg", "apple"), ("train", "b/1.jpg", "pear")]
    for _, p, c in rows:
        put_image(csv_dir / p, 0)
    (csv_dir / "labels.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    mine = registry.get("my_csv").load(tmp_path)
    assert mine.classnames == ["apple", "pear"] and len(mine.train) == 2 and len(mine.test) == 1
    (csv_dir / "b" / "1.jpg").unlink()
    assert any(str(csv_dir / "b" / "1.jpg") in p for p in registry.get("my_csv").check(tmp_path))
