"""On-disk cache of few-shot samples, one readable JSON file per sample.

Why: CoOp-family results depend on which k images per class a seed picked; caching the pick
makes a later run (or another method) train on exactly the same images, and a JSON file lets
a person see them. The file name carries a key over everything that changes the sample (the
dataset name, the split fingerprint, the listed images and labels, the class names, which also
tell a base/novel subset apart, shots, seed and the sampler version), so a stale sample is
never re-used: any change gives a new file.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from .base import DatasetSplits, Datum
from .jsonfiles import read_json, write_json_atomic
from .sampling import TRAIN_ONLY_FEWSHOT, draw_splits

log = logging.getLogger(__name__)

DIRNAME = "split_fewshot_dvpt"
FORMAT = "dvpt-fewshot/1"


def _rel(path: str, root: str | None) -> str:
    """``path`` relative to the dataset root, so moving the data keeps the cache valid."""
    if root:
        prefix = root.rstrip(os.sep) + os.sep
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def cache_key(splits: DatasetSplits, shots: int, seed: int) -> str:
    """Hash of everything the sample depends on (paths relative to the dataset root)."""
    h = hashlib.sha256()
    head = [FORMAT, splits.name, splits.fingerprint, str(shots), str(seed), str(splits.name in TRAIN_ONLY_FEWSHOT)]
    h.update("\0".join(head).encode())
    h.update("\0".join(splits.classnames).encode())
    for split in ("train", "val"):
        h.update(f"\0{split}\0".encode())
        for d in getattr(splits, split):
            h.update(f"{_rel(d.path, splits.root)}\t{d.label}\n".encode())
    return h.hexdigest()[:16]


def cache_path(directory: Path, shots: int, seed: int, key: str) -> Path:
    return directory / f"shot_{shots}-seed_{seed}-{key}.json"


def _encode(items: list[Datum], root: str | None) -> list[list[Any]]:
    return [[_rel(d.path, root), d.label, d.classname] for d in items]


def _decode(rows: Any, pool: list[Datum], root: str | None) -> list[Datum] | None:
    """Map cached ``[path, label, name]`` rows back to the splits' own ``Datum``s."""
    index = {(_rel(d.path, root), d.label): d for d in pool}
    try:
        return [index[(row[0], row[1])] for row in rows]
    except (KeyError, IndexError, TypeError):
        return None


def _read(path: Path, splits: DatasetSplits, key: str) -> DatasetSplits | None:
    try:
        obj = read_json(path, "few-shot cache")
    except DataError as exc:  # a damaged cache file is re-sampled, never fatal
        log.warning("ignoring few-shot cache %s: %s", path, exc)
        return None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("key") != key:
        log.warning("ignoring few-shot cache %s: written for another sample", path)
        return None
    train = _decode(obj.get("train"), splits.train, splits.root)
    val = splits.val if obj.get("val") is None else _decode(obj["val"], splits.val, splits.root)
    if train is None or val is None:
        log.warning("ignoring few-shot cache %s: it names images that are not in the split", path)
        return None
    return splits.with_lists(train=train, val=val)


def _write(path: Path, sample: DatasetSplits, shots: int, seed: int, key: str) -> None:
    sampled_val = sample.name not in TRAIN_ONLY_FEWSHOT
    obj = {
        "format": FORMAT, "dataset": sample.name, "shots": shots, "seed": seed, "key": key,
        "fingerprint": sample.fingerprint, "classnames": sample.classnames,
        "train": _encode(sample.train, sample.root),
        "val": _encode(sample.val, sample.root) if sampled_val else None,
    }
    try:
        write_json_atomic(path, obj)
        log.info("few-shot sample written: %s", path)
    except OSError as exc:
        log.info("few-shot sample not cached (%s is not writable: %s)", path.parent, exc)


def cached_sample(splits: DatasetSplits, shots: int, seed: int, cache_dir: str | Path | None = None) -> DatasetSplits:
    """The cached sample when one matches, else draw it and cache it."""
    if cache_dir is not None:
        directory = Path(cache_dir)
    elif splits.root and Path(splits.root).is_dir():
        directory = Path(splits.root) / DIRNAME
    else:  # nowhere sensible to put it (in-memory splits): never create folders at a guessed path
        log.debug("few-shot sample of %s not cached: no dataset folder", splits.name)
        return draw_splits(splits, shots, seed)
    key = cache_key(splits, shots, seed)
    path = cache_path(directory, shots, seed, key)
    if path.is_file():
        hit = _read(path, splits, key)
        if hit is not None:
            log.debug("few-shot sample re-used: %s", path)
            return hit
    sample = draw_splits(splits, shots, seed)
    _write(path, sample, shots, seed, key)
    return sample


def sample_few_shot(splits: DatasetSplits, shots: int, seed: int, cache_dir: str | Path | None = None,
                    cache: bool = True) -> DatasetSplits:
    """Train gets ``shots`` per class and val ``min(shots, 4)``; test is untouched.

    With ``cache`` (default) the sample is stored once per (dataset, split content, classes,
    shots, seed) as JSON in ``cache_dir`` (default ``<splits.root>/split_fewshot_dvpt``) and
    read back on later calls; a read-only location just means no caching. ``shots <= 0``
    returns the splits unchanged.
    """
    if shots <= 0:
        return splits
    if not cache:
        return draw_splits(splits, shots, seed)
    return cached_sample(splits, shots, seed, cache_dir)
