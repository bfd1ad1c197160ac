"""Training batches, from images (naive path) or from frozen features computed once.

The image tower is frozen in CoOp-style tuning, so for methods that do not change it the
features of each training image under K augmentation views are computed once; every epoch
then draws one view per image. ``views=0`` selects the naive path (encode every step).
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from ..backbones.base import Backbone
from ..data.base import Datum
from ..data.loading import ImageDataset
from ..methods.base import Batch
from .device import autocast
from .progress import progress

log = logging.getLogger(__name__)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Randomness of an epoch depends only on (seed, epoch): a resumed run matches."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def drop_last(n_items: int, batch_size: int) -> bool:
    """Dassl drops the last partial batch only when the data holds at least one batch."""
    return n_items >= batch_size


@torch.no_grad()
def encode_items(
    backbone: Backbone,
    items: Sequence[Datum],
    transform: Callable,
    *,
    batch_size: int = 100,
    precision: str = "fp32",
    desc: str = "encode images",
    num_workers: int = 0,
) -> torch.Tensor:
    """Frozen image features [N, E] (float32, on CPU) of ``items`` under ``transform``."""
    loader = DataLoader(ImageDataset(items, transform), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    out = []
    for images, _, _ in progress(loader, desc=desc, total=len(loader)):
        with autocast(backbone.device, precision):
            out.append(backbone.encode_image(images.to(backbone.device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, backbone.embed_dim)


class ImageBatches:
    """Naive path: load, augment and (inside the method) encode images at every step."""

    def __init__(self, items: Sequence[Datum], transform: Callable, batch_size: int, seed: int, num_workers: int = 0):
        self.dataset = ImageDataset(items, transform)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.drop_last = drop_last(len(items), batch_size)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        generator = epoch_generator(self.seed, epoch)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # augmentation draws
        loader = DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=True, generator=generator,
            drop_last=self.drop_last, num_workers=self.num_workers,
        )
        for images, labels, _ in loader:
            yield Batch(labels=labels, images=images)


class FeatureBatches:
    """Cached path: ``features`` [K, N, E] (K augmentation views); one view per image per epoch.

    Items come in the same order as ``ImageBatches`` with the same seed, so with one view of
    a deterministic transform the two paths train identically (tested).
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int):
        if features.dim() != 3:
            raise ValueError("features must be [views, items, dim]")
        self.features, self.labels = features, labels
        self.batch_size, self.seed = batch_size, seed
        self.drop_last = drop_last(features.shape[1], batch_size)

    def __len__(self) -> int:
        n = self.features.shape[1]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        generator = epoch_generator(self.seed, epoch)
        n_views, n = self.features.shape[:2]
        # the same draws, in the same order, as ImageBatches (its augmentation seed, the
        # DataLoader's worker base seed, the sampler's permutation): same item order
        torch.randint(0, 2**31 - 1, (1,), generator=generator)
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        order = torch.randperm(n, generator=generator)
        views = torch.randint(0, n_views, (n,), generator=generator)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield Batch(labels=self.labels[idx], features=self.features[views[idx], idx].float())


def cached_view_features(
    backbone: Backbone,
    items: Sequence[Datum],
    transform: Callable,
    views: int,
    seed: int,
    *,
    batch_size: int = 100,
    precision: str = "fp32",
) -> torch.Tensor:
    """[K, N, E] half-precision features of K seeded augmentation views of every item.

    Views are copied into one preallocated tensor, not stacked: ``torch.stack`` of float16
    tensors fails under a CPU bf16 autocast a caller may have open."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")

    def view_features(view: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 7919 + view)
            return encode_items(backbone, items, transform, batch_size=batch_size, precision=precision,
                                desc=f"cache view {view + 1}/{views}")

    first = view_features(0)
    out = torch.empty((views, *first.shape), dtype=torch.float16, device=first.device)
    out[0] = first
    for view in range(1, views):
        out[view] = view_features(view)
    return out
