"""Frozen image features, computed once and reused while nothing that shapes them changed.

The image tower is frozen in CoOp-style tuning, so its features of the few-shot training set
(under K seeded augmentation views) and of each evaluation split are computed once. They are
kept in memory for the life of the process and, with ``cache.dir``, in safetensors files
shared between runs (written atomically).

A cache entry's key covers everything that changes the features: the backbone's identity
(name, config, a weight fingerprint), the transform's repr (image size, crop, mean, std),
each item's path, label, file size and modification time, the views, the seed and the
precision. Any change gives another key, so a stale entry is never read; the full key is
also stored inside each file and checked on load.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..backbones.base import Backbone
from ..data.base import Datum
from .features import cached_view_features, encode_items
from .io import atomic_write

log = logging.getLogger(__name__)

#: bump when the way features are computed changes, so old files are not read
CACHE_VERSION = 1


def items_key(items: Sequence[Datum]) -> str:
    """Digest of the items' paths, labels, file sizes and modification times."""
    digest = hashlib.sha256()
    for item in items:
        try:
            stat = os.stat(item.path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # encoding will raise a clear DataError for the missing file
            size, mtime = -1, -1
        digest.update(f"{item.path}\t{item.label}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()[:16]


def transform_key(transform: Callable) -> str:
    """torchvision transforms print their parameters (size, scale, interpolation, mean/std)."""
    return repr(transform)


def _digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class FeatureStore:
    """Memoised frozen image features of one backbone (memory, plus ``cache_dir`` on disk).

    Training views are stored in float16 (they are augmented samples anyway: half the
    memory, and what the cached path trains on); evaluation features stay float32 so that
    accuracies equal the image path's.
    """

    backbone: Backbone
    precision: str = "fp32"
    batch_size: int = 100
    cache_dir: str | Path | None = None
    _memory: dict[str, torch.Tensor] = field(default_factory=dict)
    #: how many feature sets went through the image tower (tests count this)
    encoder_passes: int = 0
    #: how many were read from ``cache_dir``
    disk_hits: int = 0

    def eval_features(self, items: Sequence[Datum], transform: Callable | None = None) -> torch.Tensor:
        """[N, E] float32 features of ``items`` under the deterministic eval transform."""
        transform = transform or self.backbone.eval_transform()
        fields = self._fields("eval", items, transform)
        return self._get(fields, lambda: encode_items(
            self.backbone, items, transform, batch_size=self.batch_size, precision=self.precision,
            desc="encode eval images",
        ))

    def train_views(self, items: Sequence[Datum], views: int, seed: int,
                    transform: Callable | None = None) -> torch.Tensor:
        """[K, N, E] float16 features of K seeded augmentation views of every item."""
        transform = transform or self.backbone.train_transform()
        fields = self._fields("train", items, transform) | {"views": views, "seed": seed}
        return self._get(fields, lambda: cached_view_features(
            self.backbone, items, transform, views, seed, batch_size=self.batch_size, precision=self.precision,
        ))

    def _fields(self, kind: str, items: Sequence[Datum], transform: Callable) -> dict:
        return {
            "version": CACHE_VERSION,
            "kind": kind,
            "backbone": self.backbone.identity(),
            "transform": transform_key(transform),
            "items": items_key(items),
            "count": len(items),
            "precision": self.precision,
        }

    def _get(self, fields: dict, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = _digest(fields)
        if key in self._memory:
            return self._memory[key]
        path = self._path(fields["kind"], key)
        features = self._load(path, fields) if path is not None else None
        if features is None:
            self.encoder_passes += 1
            features = compute()
            if path is not None:
                self._save(path, features, fields)
        self._memory[key] = features
        return features

    def _path(self, kind: str, key: str) -> Path | None:
        return None if self.cache_dir is None else Path(self.cache_dir).expanduser() / f"{kind}-{key}.safetensors"

    def _load(self, path: Path, fields: dict) -> torch.Tensor | None:
        if not path.is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                stored = json.loads((f.metadata() or {}).get("key", "null"))
                if stored != fields:
                    log.warning("feature cache %s was made for other inputs; recomputing", path)
                    return None
                features = f.get_tensor("features")
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # unreadable file: recompute, overwrite
            log.warning("cannot read feature cache %s (%s); recomputing", path, exc)
            return None
        self.disk_hits += 1
        log.info("image features from cache %s", path)
        return features

    def _save(self, path: Path, features: torch.Tensor, fields: dict) -> None:
        from safetensors.torch import save_file

        meta = {"key": json.dumps(fields, sort_keys=True)}
        atomic_write(path, lambda tmp: save_file({"features": features.contiguous()}, str(tmp), metadata=meta))
