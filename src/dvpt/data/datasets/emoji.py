"""The offline emoji benchmark: one dataset per Unicode group (see ``dvpt.data.emoji``).

Nothing to download: images are rendered from the system's emoji fonts into the cache on
first use. Options: ``domain``, ``color`` (Noto Color Emoji) or ``line`` (Symbola outlines);
``test_per_class`` (test renderings per class, default 10); ``difficulty``, the [low, high]
range each image's rendering difficulty is drawn from (default [0.6, 1.0]).
"""
from __future__ import annotations

import functools
from pathlib import Path

from ...registry import DATASETS
from ..base import DatasetSpec
from .. import emoji


def _register(spec: emoji.EmojiDataset) -> None:
    domains = " or ".join(spec.domains)
    DATASETS.add(
        spec.name,
        DatasetSpec(
            name=spec.name,
            layout=f"rendered on first use into $DVPT_CACHE/emoji/ (option domain={domains})",
            load=functools.partial(emoji.load_emoji, spec.name),
            check=functools.partial(_check, spec.name),
            num_classes=None,  # depends on the domain's font coverage
            templates=spec.templates,
            description=f"Unicode group '{spec.group}' as emoji renderings ({domains})",
        ),
    )


def _check(name: str, root: Path | None = None) -> list[str]:
    return emoji.check_emoji(name, root)


for _spec in emoji.DATASETS.values():
    _register(_spec)
