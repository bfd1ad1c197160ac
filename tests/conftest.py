"""Shared fixtures: a tiny random-weight CLIP and a small synthetic image-folder dataset.

The synthetic task (coloured squares with jitter) is one a tiny random CLIP can separate,
so "training helps" is a claim a test can check against a floor.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

os.environ.setdefault("DVPT_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 230, 20),
    "purple": (140, 30, 160),
    "cyan": (30, 210, 210),
}


def make_colour_folder(root: Path, classes: dict[str, tuple[int, int, int]] = COLOURS, per_class: int = 24,
                       size: int = 40, seed: int = 0) -> Path:
    """``root/<colour>/<i>.png``: noisy squares of one colour per class."""
    rng = random.Random(seed)
    for name, rgb in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = tuple(max(0, min(255, v + rng.randint(-35, 35))) for v in rgb)
            img = Image.new("RGB", (size, size), colour)
            # a darker inner patch at a random spot: images of a class are not identical
            x, y = rng.randint(0, size // 2), rng.randint(0, size // 2)
            img.paste(tuple(v // 2 for v in colour), (x, y, x + size // 4, y + size // 4))
            img.save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def colours_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_colour_folder(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="session")
def tiny():
    from dvpt.backbones import load_backbone

    return load_backbone("tiny-random")


def first_step(seed: int = 0):
    """The context of a run's first training step, with a fresh random stream (what the
    trainer hands ``losses`` at epoch 0, step 0 of a run seeded ``seed``)."""
    from dvpt.methods.base import StepContext

    return StepContext.for_epoch(seed, 0, 1)


def capture_evaluations(session) -> list[tuple[list[str], list, torch.Tensor]]:
    """Record every evaluation ``session`` runs as (class names, items, logits), as it happens.

    Tests compare what ``predict`` gives later against these logits: the run's own numbers,
    not a recomputation that could share a bug with the code under test.
    """
    captured: list[tuple[list[str], list, torch.Tensor]] = []
    evaluate = session.evaluate

    def capture(method, items):
        result = evaluate(method, items)
        captured.append((list(method.classnames), list(items), result.logits.clone()))
        return result

    session.evaluate = capture  # type: ignore[method-assign]
    return captured
