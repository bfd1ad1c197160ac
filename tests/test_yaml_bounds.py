"""Config YAML that would hang or is not text is refused with a message naming the file."""
from __future__ import annotations

import pytest

from dvpt.config.loader import read_yaml
from dvpt.errors import ConfigError

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def test_billion_laughs_is_refused_not_expanded(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    with pytest.raises(ConfigError, match="laughs.yaml is not valid YAML: YAML aliases"):
        read_yaml(path)


def test_binary_config_is_refused(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ConfigError, match="cfg.yaml is binary"):
        read_yaml(path)


def test_plain_config_still_reads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("method: coop\noptim: {lr: 0.002}\n")
    assert read_yaml(path) == {"method": "coop", "optim": {"lr": 0.002}}
