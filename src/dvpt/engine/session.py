"""A session: what one run shares (config, backbone, device, precision, feature cache),
and the three things protocols compose: build a method, train it, evaluate it."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..backbones import load_backbone
from ..config.loader import from_dict
from ..config.schema import RunConfig
from ..data import DATASETS
from ..data.base import DatasetSplits, Datum, labelled_names
from ..errors import DataError
from ..data.fewshot_cache import sample_few_shot
from ..methods import get_method
from ..methods.base import PromptMethod
from ..prompts.text_encoding import TextOptions
from .cache import FeatureStore
from .device import HALF_WEIGHTS, resolve_device, resolve_precision
from .evaluate import EvalResult, evaluate
from .features import FeatureBatches, ImageBatches
from .trainer import Trainer

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Session:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        #: training images per class of the last ``few_shot`` sample (written to metrics.json)
        self.shots_used: dict[str, int] | None = None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.method_cls = get_method(cfg.method)
        self.options = from_dict(self.method_cls.Options, cfg.options, "options")
        self.text_options = TextOptions(cfg.text.share_prefix, cfg.text.chunk, cfg.text.checkpoint)
        self.backbone = load_backbone(cfg.backbone, str(self.device), cfg.backbone_checkpoint,
                                      half=self.precision == HALF_WEIGHTS)
        self.store = FeatureStore(self.backbone, self.precision, cfg.eval_batch_size, cache_dir=cfg.cache.dir)

    # ---- data -------------------------------------------------------------------------
    def load_dataset(self, name: str | None = None, root: str | None = None, options: dict | None = None) -> DatasetSplits:
        spec = DATASETS.get(name or self.cfg.data.dataset)
        return spec.load(root if root is not None else self.cfg.data.root, **(options if options is not None else self.cfg.data.options))

    def few_shot(self, splits: DatasetSplits, shots: int | None = None) -> DatasetSplits:
        """The few-shot sample; ``shots_used`` records how many images each class really got.

        A class smaller than ``shots`` keeps all its images (CoOp's rule); metrics must say
        so rather than claim ``shots`` for every class.
        """
        asked = self.cfg.data.shots if shots is None else shots
        sampled = sample_few_shot(splits, asked, self.cfg.seed)
        per_label = [0] * sampled.num_classes
        for item in sampled.train:
            per_label[item.label] += 1
        # keyed by the shown name: a name given to two classes is "name [label]", never one merged entry
        counts = dict(zip(labelled_names(sampled.classnames), per_label))
        self.shots_used = counts
        short = [f"{name} ({n})" for name, n in counts.items() if asked > 0 and n < asked]
        if short and any(counts.values()):  # none at all: a test-only folder, refused by train() if it trains
            log.warning("%d class(es) have fewer than %d training images and use all they have: %s",
                        len(short), asked, ", ".join(short[:10]) + (", ..." if len(short) > 10 else ""))
        return sampled

    # ---- method -----------------------------------------------------------------------
    def build_method(self, classnames: Sequence[str], templates: Sequence[str]) -> PromptMethod:
        """The configured method for ``classnames``, told which dataset they come from."""
        seed_everything(self.cfg.seed)
        method = self.method_cls(self.backbone, classnames, templates, self.options)
        method.set_dataset(self.cfg.data.dataset)
        method = method.set_text_options(self.text_options).to(self.device)
        if self.precision == HALF_WEIGHTS:
            method.cast_fp16_parts()
        return method

    def train(
        self,
        method: PromptMethod,
        items: Sequence[Datum],
        checkpoint_dir: Path | None = None,
        callbacks: Sequence[Callable[[int], None]] = (),
    ) -> list[dict[str, float]]:
        cfg = self.cfg
        views = cfg.cache.views if cfg.cache.enabled else 0
        trains = cfg.optim.epochs > 0 and any(p.requires_grad for p in method.parameters())
        if trains and not items:
            raise DataError(f"dataset {cfg.data.dataset!r} has no training images (a test-only folder?); "
                            f"{cfg.method} trains, so give it DIR/train/<class>/ images, or use --method zeroshot")
        if views > 0 and trains and not method.uses_image_tower:  # nothing to train: no cache to build
            feats = self.store.train_views(items, views, cfg.seed)
            labels = torch.tensor([d.label for d in items], dtype=torch.long)
            batches = FeatureBatches(feats, labels, cfg.optim.batch_size, cfg.seed)
        else:
            batches = ImageBatches(items, self.backbone.train_transform(), cfg.optim.batch_size, cfg.seed)
        trainer = Trainer(
            method, batches, cfg.optim, self.device, cfg.seed, self.precision, checkpoint_dir,
            metadata={"method": cfg.method, "backbone": cfg.backbone, "classnames": list(method.classnames),
                      "templates": list(method.templates)},
            epoch_callbacks=list(callbacks),
        )
        return trainer.fit()

    def evaluate(self, method: PromptMethod, items: Sequence[Datum]) -> EvalResult:
        return evaluate(method, items, self.store)
