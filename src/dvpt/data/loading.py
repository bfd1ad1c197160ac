"""Images from disk as tensors, with one clear error for a file that cannot be read."""
from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import DataError
from .base import Datum

# a few KB of PNG can declare 20000x20000 pixels: past this bound an image is refused like a corrupt one
Image.MAX_IMAGE_PIXELS = int(os.environ.get("DVPT_MAX_IMAGE_PIXELS", "50000000"))


def draft_side(transform: Callable | None) -> int | None:
    """The shortest image side ``transform`` needs, read off its resize step (``None``: unknown).

    An eval resize to ``size`` needs ``size``; a random resized crop to ``size`` from as little
    as ``scale[0]`` of the area needs ``size / sqrt(scale[0])`` (792 pixels for 224 and 0.08),
    so a crop is never upsampled from a coarser image than a full decode would give it.
    """
    from torchvision.transforms import v2 as T

    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, T.RandomResizedCrop):
            return math.ceil(max(step.size) / math.sqrt(min(step.scale)))
        if isinstance(step, T.Resize) and step.size is not None:
            return max(step.size) if isinstance(step.size, (list, tuple)) else int(step.size)
    return None


def open_image(path: str, min_side: int | None = None) -> Image.Image:
    """Open an image as RGB; a missing or corrupt file raises ``DataError`` naming it.

    An image whose header declares more pixels than ``Image.MAX_IMAGE_PIXELS``
    (``DVPT_MAX_IMAGE_PIXELS``) is refused before any pixel is decoded, whatever its format:
    PIL itself only warns up to twice the limit and would decode it in full.

    With ``min_side``, a JPEG is decoded at the largest DCT reduction (1/2, 1/4, 1/8) that
    keeps both sides at least ``min_side`` (PIL's ``draft``): a 24-megapixel photo for a
    224-pixel model costs a sixteenth of the memory and time. ``DVPT_JPEG_DRAFT=0`` decodes
    every pixel, as the reference implementations do. Other formats have no reduced decode
    in PIL and are decoded in full (within the limit).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, from the header
            img = Image.open(path)
        with img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.width * img.height > limit:
                raise DataError(f"cannot read image {path}: {img.width}x{img.height} = {img.width * img.height:,} "
                                f"pixels, over the limit of {limit:,}; remove or replace the file (or raise "
                                "DVPT_MAX_IMAGE_PIXELS)")
            if min_side and img.format == "JPEG" and os.environ.get("DVPT_JPEG_DRAFT", "1") != "0":
                img.draft("RGB", (min_side, min_side))
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
        self.min_side = draft_side(transform)  # JPEGs are decoded no larger than this needs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        item = self.items[index]
        return self.transform(open_image(item.path, self.min_side)), item.label, index
