"""`dvpt` command line: listing, a real run, and one clear line for each user mistake."""
from __future__ import annotations

import json
import shutil

import pytest

from dvpt.cli import main
from dvpt.config import build_config
from dvpt.errors import ConfigError


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_methods_lists_the_registry(capsys):
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert {"zeroshot", "coop"} <= set(names)


def test_train_writes_a_run_folder(capsys, colours_root, tmp_path):
    out_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--method", "coop", "--backbone", "tiny-random", "--dataset", "folder",
                           "--root", str(colours_root), "--shots", "4", "--epochs", "2", "--protocol", "all",
                           "--set", "cache.views=1", "--set", "options.n_ctx=4", "-o", str(out_dir))
    assert code == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert json.loads(out)["accuracy"] == metrics["accuracy"]
    assert metrics["shots"] == 4 and metrics["method"] == "coop"
    import yaml

    saved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert saved["optim"]["epochs"] == 2 and saved["data"]["root"] == str(colours_root)


def _bad(capsys, tmp_path, *argv: str) -> str:
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "train", "--backbone", "tiny-random", "--epochs", "1", "--protocol", "all",
                           "-o", str(out_dir), *argv)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert not out_dir.exists(), "nothing may be left in --output after a user error"
    return lines[0]


def test_missing_root(capsys, tmp_path):
    msg = _bad(capsys, tmp_path, "--dataset", "folder", "--root", str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in msg


def test_class_folder_without_images(capsys, tmp_path):
    root = tmp_path / "data"
    from conftest import make_colour_folder

    make_colour_folder(root, {"red": (200, 0, 0), "blue": (0, 0, 200)}, per_class=6)
    (root / "empty_class").mkdir()
    msg = _bad(capsys, tmp_path, "--dataset", "folder", "--root", str(root))
    assert "empty_class" in msg


def test_unreadable_image(capsys, tmp_path):
    root = tmp_path / "data"
    from conftest import make_colour_folder

    make_colour_folder(root, {"red": (200, 0, 0), "blue": (0, 0, 200)}, per_class=6)
    for f in (root / "red").glob("*.png"):
        f.write_bytes(b"not an image")
    msg = _bad(capsys, tmp_path, "--dataset", "folder", "--root", str(root), "--shots", "2")
    assert "cannot read image" in msg and "red" in msg


def test_unknown_method(capsys, tmp_path, colours_root):
    msg = _bad(capsys, tmp_path, "--method", "nosuch", "--dataset", "folder", "--root", str(colours_root))
    assert "nosuch" in msg and "coop" in msg


def test_backbone_not_loadable_offline(capsys, tmp_path, colours_root, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = _bad(capsys, tmp_path, "--dataset", "folder", "--root", str(colours_root),
               "--backbone", "openai/clip-vit-base-patch16")
    assert "openai/clip-vit-base-patch16" in msg and "--backbone DIR" in msg


def test_unknown_config_key_and_wrong_type():
    with pytest.raises(ConfigError, match="optim.lrr"):
        build_config(overrides=["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="optim.epochs"):
        build_config(overrides=["optim.epochs=many"])
    with pytest.raises(ConfigError, match="options.n_ctxx"):
        build_config(method="coop", overrides=["options.n_ctxx=3"])


def test_config_layers_in_order(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text("optim: {lr: 0.5, epochs: 3}\nseed: 7\n")
    cfg = build_config(method="coop", files=[str(run_file)], flags={"seed": 9}, overrides=["optim.epochs=4"])
    assert cfg.optim.lr == 0.5  # run file beats the preset and defaults
    assert cfg.seed == 9  # flags beat the run file
    assert cfg.optim.epochs == 4  # --set beats everything
    assert isinstance(cfg.optim.lr, float)
