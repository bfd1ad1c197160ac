"""Images from disk as tensors, with one clear error for a file that cannot be read."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import DataError
from .base import Datum

# a few KB of PNG can declare 20000x20000 pixels: past this bound an image is refused like a corrupt one
Image.MAX_IMAGE_PIXELS = int(os.environ.get("DVPT_MAX_IMAGE_PIXELS", "50000000"))


def open_image(path: str) -> Image.Image:
    """Open an image as RGB; a missing or corrupt file raises ``DataError`` naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image not found: {path} (check --root and the split file)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}; remove or replace the file "
                        "(or raise DVPT_MAX_IMAGE_PIXELS)") from None


class ImageDataset(Dataset):
    """(image tensor, label, index) for a list of ``Datum`` under one transform."""

    def __init__(self, items: Sequence[Datum], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        item = self.items[index]
        return self.transform(open_image(item.path)), item.label, index
