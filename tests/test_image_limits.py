"""Oversized images are refused like unreadable ones, with a message naming the file."""
from __future__ import annotations

import pytest
from PIL import Image

from dvpt.data.loading import open_image
from dvpt.errors import DataError


def test_image_over_the_pixel_limit_is_a_data_error(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels > 2 x limit: PIL refuses it
    with pytest.raises(DataError, match="cannot read image .*bomb.png.*DVPT_MAX_IMAGE_PIXELS"):
        open_image(str(path))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert open_image(str(path)).size == (40, 40)
