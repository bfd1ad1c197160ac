"""Datasets: readers, few-shot sampling, base/novel splits, image loading."""
from __future__ import annotations

from ..registry import DATASETS
from .base import DatasetSplits, DatasetSpec, Datum
from . import datasets as _datasets  # noqa: F401  (registers every reader)

__all__ = ["DATASETS", "DatasetSplits", "DatasetSpec", "Datum"]
