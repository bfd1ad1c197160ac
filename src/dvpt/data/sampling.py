"""Few-shot sampling and the base/novel class split, as the CoOp family does them.

* Few-shot (Dassl ``generate_fewshot_dataset``): per class, ``random.sample(items, k)`` (all
  items when fewer), train with k and val with min(k, 4), seeded.
* Base/novel (``subsample_classes``): sort the labels, base = first ceil(n/2), novel = the
  rest; labels are remapped to 0..m-1 so each half is its own classification problem.
"""
from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Literal, Sequence

from .base import DatasetSplits, Datum

Subset = Literal["all", "base", "novel"]


def few_shot(items: Sequence[Datum], shots: int, seed: int) -> list[Datum]:
    """``shots`` items per label, drawn with ``random.Random(seed)``; all of a smaller class.

    ``shots <= 0`` keeps everything (full-data training).
    """
    if shots <= 0:
        return list(items)
    by_label: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    rng = random.Random(seed)
    out: list[Datum] = []
    for label in sorted(by_label):
        group = by_label[label]
        out.extend(group if len(group) <= shots else rng.sample(group, shots))
    return out


def sample_few_shot(splits: DatasetSplits, shots: int, seed: int) -> DatasetSplits:
    """Train gets ``shots`` per class and val ``min(shots, 4)``; test is untouched."""
    return splits.with_lists(
        train=few_shot(splits.train, shots, seed),
        val=few_shot(splits.val, min(shots, 4) if shots > 0 else 0, seed),
    )


def base_novel_labels(num_classes: int) -> tuple[list[int], list[int]]:
    """Base = first ceil(n/2) labels, novel = the rest."""
    m = math.ceil(num_classes / 2)
    labels = list(range(num_classes))
    return labels[:m], labels[m:]


def subsample_classes(splits: DatasetSplits, which: Subset) -> DatasetSplits:
    """Keep the base or novel half of the classes, labels remapped to 0..m-1."""
    if which == "all":
        return splits
    base, novel = base_novel_labels(splits.num_classes)
    keep = base if which == "base" else novel
    remap = {old: new for new, old in enumerate(keep)}

    def relabel(items: list[Datum]) -> list[Datum]:
        return [Datum(d.path, remap[d.label], d.classname, d.domain) for d in items if d.label in remap]

    rows = [splits.label_space_rows[i] for i in keep] if splits.label_space_rows else None
    return splits.with_lists(
        train=relabel(splits.train),
        val=relabel(splits.val),
        test=relabel(splits.test),
        classnames=[splits.classnames[i] for i in keep],
        label_space_rows=rows,
    )
