"""Image transforms shared by backbones: the model's own eval preprocessing and CoOp's
training augmentation (random resized crop with scale (0.08, 1), horizontal flip)."""
from __future__ import annotations

from typing import Sequence

from torchvision.transforms import v2 as T
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _to_tensor() -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True)]


def eval_transform(size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> T.Compose:
    """Shorter edge to ``size`` (bicubic), centre crop, normalise: CLIP's preprocessing."""
    return T.Compose(
        [
            T.RGB(),
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(size),
            *_to_tensor(),
            T.Normalize(mean, std),
        ]
    )


def train_transform(
    size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    scale: tuple[float, float] = (0.08, 1.0),
) -> T.Compose:
    """CoOp/Dassl training augmentation: random resized crop (bicubic) and flip."""
    return T.Compose(
        [
            T.RGB(),
            T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.RandomHorizontalFlip(),
            *_to_tensor(),
            T.Normalize(mean, std),
        ]
    )
