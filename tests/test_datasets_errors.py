"""User mistakes on disk: one clear DataError naming the path; ``dvpt datasets check`` lists all."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets_fixtures import BUILDERS, put_image
from dvpt.cli import main
from dvpt.data import DATASETS
from dvpt.errors import DataError


def load(name: str, root: Path):
    return DATASETS.get(name).load(root)


def test_split_naming_a_missing_image(tmp_path: Path) -> None:
    BUILDERS["oxford_pets"](tmp_path)
    gone = tmp_path / "oxford_pets" / "images" / "image_01train000.jpg"
    gone.unlink()
    with pytest.raises(DataError) as err:
        load("oxford_pets", tmp_path)
    assert str(gone) in str(err.value) and "split_zhou_OxfordPets.json" in str(err.value)


def test_malformed_json(tmp_path: Path) -> None:
    BUILDERS["food101"](tmp_path)
    split = tmp_path / "food-101" / "split_zhou_Food101.json"
    split.write_text('{"train": [["apple_pie/a.jpg", 0, "apple_pie"],')
    with pytest.raises(DataError, match="malformed JSON") as err:
        load("food101", tmp_path)
    assert str(split) in str(err.value)


def test_wrong_shape_json(tmp_path: Path) -> None:
    BUILDERS["food101"](tmp_path)
    split = tmp_path / "food-101" / "split_zhou_Food101.json"
    split.write_text(json.dumps({"train": [["a.jpg", "zero", "x"]], "val": [], "test": []}))
    with pytest.raises(DataError, match=r"train\[0\]") as err:
        load("food101", tmp_path)
    assert str(split) in str(err.value)


def test_wrong_root(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load("dtd", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    tmp_path.joinpath("other").mkdir()
    with pytest.raises(DataError, match="must be the folder that holds dtd/") as err:
        load("dtd", tmp_path / "other")
    assert str(tmp_path / "other" / "dtd") in str(err.value)


def test_missing_split_file_that_cannot_be_generated_says_where_to_get_it(tmp_path: Path) -> None:
    BUILDERS["stanford_cars"](tmp_path)
    (tmp_path / "stanford_cars" / "split_zhou_StanfordCars.json").unlink()
    with pytest.raises(DataError, match="DATASETS.md") as err:
        load("stanford_cars", tmp_path)
    assert str(tmp_path / "stanford_cars" / "split_zhou_StanfordCars.json") in str(err.value)


def test_missing_split_file_is_generated_50_20_30_and_written_atomically(tmp_path: Path) -> None:
    image_dir = tmp_path / "caltech-101" / "101_ObjectCategories"
    for label, c in enumerate(["BACKGROUND_Google", "Faces", "Faces_easy", "accordion", "airplanes"]):
        for i in range(10):
            put_image(image_dir / c / f"image_{i:04d}.jpg", label)
    splits = load("caltech101", tmp_path)
    assert splits.classnames == ["face", "accordion", "airplane"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 6, 9)
    written = tmp_path / "caltech-101" / "split_zhou_Caltech101.json"
    obj = json.loads(written.read_text())
    assert obj["train"][0][0].startswith("Faces/") and obj["train"][0][1:] == [0, "face"]
    assert [p.name for p in written.parent.iterdir() if p.name.endswith(".tmp")] == []
    again = load("caltech101", tmp_path)  # now read from the file: same split
    assert again.train == splits.train and again.fingerprint == splits.fingerprint


def test_check_lists_every_problem_and_exits_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    BUILDERS["oxford_pets"](tmp_path)
    BUILDERS["dtd"](tmp_path)
    BUILDERS["fgvc_aircraft"](tmp_path)
    images = tmp_path / "oxford_pets" / "images"
    gone = [images / "image_00train001.jpg", images / "image_03test002.jpg"]
    for p in gone:
        p.unlink()
    empty = images / "image_02val000.jpg"
    empty.write_bytes(b"")
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").write_text("{not json")
    assert main(["datasets", "check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for p in gone:
        assert f"{p}: missing" in out
    assert f"{empty}: empty file" in out
    assert "malformed JSON" in out and "split_zhou_DescribableTextures.json" in out
    assert "fgvc_aircraft: ok, 5 classes, train 30 / val 10 / test 15" in out
    assert "2 of 3 dataset(s) have problems: dtd, oxford_pets" in out


def test_check_one_dataset_ok_and_open_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    BUILDERS["eurosat"](tmp_path)
    assert main(["datasets", "check", "--root", str(tmp_path), "--dataset", "eurosat"]) == 0
    assert "eurosat: ok, 5 classes" in capsys.readouterr().out
    corrupt = next((tmp_path / "eurosat" / "2750" / "Forest").iterdir())
    corrupt.write_bytes(b"not an image")
    assert main(["datasets", "check", "--root", str(tmp_path), "--dataset", "eurosat", "--open-images"]) == 1
    assert f"cannot read image {corrupt}" in capsys.readouterr().out


def test_check_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "check", "--root", str(tmp_path), "--dataset", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["datasets", "check", "--root", str(tmp_path)]) == 2
    assert "no dataset folder under" in capsys.readouterr().err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    pets = next(line for line in lines if line.startswith("oxford_pets "))
    assert " 37 " in pets and "split_zhou_OxfordPets.json" in pets
    assert any(line.startswith("imagenet_a ") and "[target only]" in line for line in lines)
    assert len(lines) == len(DATASETS.names())
