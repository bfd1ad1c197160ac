"""Frozen image features, computed once per (backbone, transform, items) and reused.

Evaluation features never change for a frozen backbone and a deterministic transform;
training views are seeded. Both are memoised in memory for the life of the process.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..backbones.base import Backbone
from ..data.base import Datum
from .features import cached_view_features, encode_items


def items_key(items: Sequence[Datum]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.path}\t{item.label}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class FeatureStore:
    backbone: Backbone
    precision: str = "fp32"
    batch_size: int = 100
    _memory: dict[tuple, torch.Tensor] = field(default_factory=dict)
    #: how many times images went through the image tower (tests count this)
    encoder_passes: int = 0

    def eval_features(self, items: Sequence[Datum]) -> torch.Tensor:
        key = ("eval", self.backbone.identity(), items_key(items))
        if key not in self._memory:
            self.encoder_passes += 1
            self._memory[key] = encode_items(
                self.backbone, items, self.backbone.eval_transform(),
                batch_size=self.batch_size, precision=self.precision, desc="encode eval images",
            )
        return self._memory[key]

    def train_views(self, items: Sequence[Datum], views: int, seed: int) -> torch.Tensor:
        key = ("train", self.backbone.identity(), items_key(items), views, seed)
        if key not in self._memory:
            self.encoder_passes += 1
            self._memory[key] = cached_view_features(
                self.backbone, items, self.backbone.train_transform(), views, seed,
                batch_size=self.batch_size, precision=self.precision,
            )
        return self._memory[key]
