"""Few-shot sampling and the base/novel class split, as the CoOp family does them.

* Few-shot (Dassl ``generate_fewshot_dataset``): one ``random.Random(seed)`` stream; per class,
  in the order labels first appear in the list, ``rng.sample(items, k)`` (all items when the
  class has fewer than k). Train is drawn with k, then val with min(k, 4) from the same stream,
  as two consecutive calls on a freshly seeded global RNG do in CoOp. ImageNet samples train
  only (its val is the test set). Call it *before* ``subsample_classes``, as CoOp does, so the
  base/novel runs of one seed share their shots.
* The sample is cached on disk (``fewshot_cache.sample_few_shot``, the entry point runs use)
  so later runs re-use it exactly; this module only draws.
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

#: datasets whose val list is kept whole (CoOp's ImageNet reader samples train only).
TRAIN_ONLY_FEWSHOT = frozenset({"imagenet"})


def draw(items: Sequence[Datum], shots: int, rng: random.Random) -> list[Datum]:
    """``shots`` items per label from ``rng``; labels in order of first appearance."""
    if shots <= 0:
        return list(items)
    by_label: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    out: list[Datum] = []
    for group in by_label.values():
        out.extend(rng.sample(group, shots) if len(group) >= shots else group)
    return out


def few_shot(items: Sequence[Datum], shots: int, seed: int) -> list[Datum]:
    """``shots`` items per label, drawn with ``random.Random(seed)``; all of a smaller class.

    ``shots <= 0`` keeps everything (full-data training).
    """
    return draw(items, shots, random.Random(seed))


def val_shots(shots: int) -> int:
    return min(shots, 4)


def draw_splits(splits: DatasetSplits, shots: int, seed: int) -> DatasetSplits:
    """The uncached sample: train with ``shots``, then val with min(shots, 4), one stream."""
    rng = random.Random(seed)
    train = draw(splits.train, shots, rng)
    val = splits.val if splits.name in TRAIN_ONLY_FEWSHOT else draw(splits.val, val_shots(shots), rng)
    return splits.with_lists(train=train, val=val)


def base_novel_labels(num_classes: int) -> tuple[list[int], list[int]]:
    """Base = first ceil(n/2) labels, novel = the rest."""
    m = math.ceil(num_classes / 2)
    labels = list(range(num_classes))
    return labels[:m], labels[m:]


def subsample_classes(splits: DatasetSplits, which: Subset) -> DatasetSplits:
    """Keep the base or novel half of the classes, labels remapped to 0..m-1."""
    if which == "all":
        return splits
    if which not in ("base", "novel"):
        raise ValueError(f"subset must be 'all', 'base' or 'novel', got {which!r}")
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
