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


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF", "JPEG"])
def test_every_format_over_the_limit_is_refused_before_decoding(fmt, tmp_path, monkeypatch):
    """120x100 = 12,000 pixels against a limit of 10,000: between the limit and twice it, where
    PIL only warns and would decode in full. Refused from the header, no pixel decoded; at
    exactly the limit the image is read, a JPEG at reduced size (its draft does not lift the
    limit), every other format in full."""
    from PIL import ImageFile

    big, fits = tmp_path / f"big.{fmt.lower()}", tmp_path / f"fits.{fmt.lower()}"
    Image.new("RGB", (120, 100), (200, 20, 20)).save(big, fmt)
    Image.new("RGB", (100, 100), (200, 20, 20)).save(fits, fmt)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    decoded: list[str] = []
    real_load = ImageFile.ImageFile.load

    def load(self):
        decoded.append(self.format)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    with pytest.raises(DataError, match=r"cannot read image .*big\.\w+: 120x100 = 12,000 pixels, over the limit "
                                        r"of 10,000.*DVPT_MAX_IMAGE_PIXELS"):
        open_image(str(big), 32)
    assert decoded == []
    reduced = (50, 50) if fmt == "JPEG" else (100, 100)  # only JPEG has a reduced decode (1/2 keeps >= 32)
    assert open_image(str(fits), 32).size == reduced and decoded


def _smooth_jpeg(path, width=2000, height=1600):
    import numpy as np

    y, x = np.mgrid[0:height, 0:width] / 400.0
    arr = np.stack([np.sin(x) * 100 + 128, np.cos(y) * 100 + 128, np.sin(x + y) * 100 + 128], -1)
    Image.fromarray(arr.astype(np.uint8)).save(path, quality=92)
    return path


def test_jpeg_is_decoded_no_larger_than_the_transform_needs(tmp_path, monkeypatch):
    """A 2000x1600 JPEG for a 224-pixel eval transform decodes at 1/4 (500x400, both sides
    >= 224), at 1/2 for training's random resized crop (>= 792), and the model input stays
    within 0.05 of the full decode's; DVPT_JPEG_DRAFT=0 and PNGs decode every pixel."""
    from dvpt.backbones.transforms import eval_transform, train_transform
    from dvpt.data.loading import ImageDataset, draft_side, open_image
    from dvpt.data.base import Datum

    path = str(_smooth_jpeg(tmp_path / "big.jpg"))
    assert draft_side(eval_transform(224)) == 224 and draft_side(train_transform(224)) == 792
    assert open_image(path).size == (2000, 1600)
    assert open_image(path, 224).size == (500, 400)
    assert open_image(path, 792).size == (1000, 800)
    assert ImageDataset([Datum(path, 0, "x")], eval_transform(224)).min_side == 224
    t = eval_transform(224)
    assert (t(open_image(path)) - t(open_image(path, 224))).abs().max() < 0.05
    monkeypatch.setenv("DVPT_JPEG_DRAFT", "0")
    assert open_image(path, 224).size == (2000, 1600)
    monkeypatch.delenv("DVPT_JPEG_DRAFT")
    png = tmp_path / "big.png"
    Image.new("RGB", (900, 600), (10, 20, 30)).save(png)
    assert open_image(str(png), 224).size == (900, 600)
