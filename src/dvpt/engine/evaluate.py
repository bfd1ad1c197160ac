"""Evaluation: top-1 accuracy (micro, as Dassl) and per-class accuracy."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from ..data.base import Datum
from ..data.loading import ImageDataset
from ..methods.base import Batch, PromptMethod
from .cache import FeatureStore
from .device import autocast
from .progress import progress


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2BN / (B + N), the literature's single base-to-novel score (0 when both are 0)."""
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


@dataclass
class EvalResult:
    accuracy: float
    per_class_accuracy: list[float]
    num_images: int
    logits: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "num_images": self.num_images,
                "per_class_accuracy": self.per_class_accuracy}


def accuracy_from_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[float, list[float]]:
    pred = logits.argmax(-1)
    correct = (pred == labels).float()
    acc = float(correct.mean() * 100) if len(labels) else 0.0
    per_class = []
    for c in range(num_classes):
        mask = labels == c
        per_class.append(float(correct[mask].mean() * 100) if mask.any() else float("nan"))
    return acc, per_class


@torch.no_grad()
def predict_logits(method: PromptMethod, items: Sequence[Datum], store: FeatureStore) -> torch.Tensor:
    """Logits [N, C] of ``items`` over the method's current class list, in the store's batch
    size and precision: the ones its cached features were computed in, set once per session."""
    method.eval()
    device, batch_size, precision = store.backbone.device, store.batch_size, store.precision
    with autocast(device, precision):
        classifier = method.classifier_or_none()
    labels = torch.tensor([d.label for d in items], dtype=torch.long)
    out = []
    if not method.uses_image_tower:
        feats = store.eval_features(items)
        for start in range(0, len(items), batch_size):
            batch = Batch(labels=labels[start : start + batch_size], features=feats[start : start + batch_size])
            with autocast(device, precision):
                out.append(method.logits(batch.to(device), classifier).float().cpu())
    else:
        loader = DataLoader(ImageDataset(items, store.backbone.eval_transform()), batch_size=batch_size)
        for images, y, _ in progress(loader, desc="evaluate", total=len(loader)):
            with autocast(device, precision):
                out.append(method.logits(Batch(labels=y, images=images).to(device), classifier).float().cpu())
    return torch.cat(out) if out else torch.empty(0, len(method.classnames))


def evaluate(method: PromptMethod, items: Sequence[Datum], store: FeatureStore) -> EvalResult:
    logits = predict_logits(method, items, store)
    labels = torch.tensor([d.label for d in items], dtype=torch.long)
    acc, per_class = accuracy_from_logits(logits, labels, len(method.classnames))
    return EvalResult(acc, per_class, len(items), logits, labels)
