"""Zero-shot CLIP: classify with hand-crafted prompts, nothing learned.

    logits = s * <f(x), t_c>,   t_c = normalise(mean_k normalise(g(template_k(c))))

With ``templates: dataset`` the per-dataset template (CoOp's CUSTOM_TEMPLATES) alone; with
``ensemble`` the dataset's templates averaged in feature space as CoOp's ZeroshotCLIP2 does:
the 7 select ImageNet templates, plus the custom one for every dataset but ImageNet. Which
dataset it is comes from the run's config (``PromptMethod.dataset``, set by the session).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..prompts.handcrafted import handcrafted_features
from .base import MethodOptions, PromptMethod, register_method


#: which hand-crafted templates: the dataset's own, or all of them averaged
TemplateChoice = Literal["dataset", "ensemble"]


@dataclass
class ZeroShotOptions(MethodOptions):
    templates: TemplateChoice = "dataset"


#: datasets ZeroshotCLIP2 ensembles without their custom template (its
#: ``if cfg.DATASET.NAME != "ImageNet"``): the variants (V2, Sketch, A, R) keep it
ENSEMBLE_WITHOUT_CUSTOM = frozenset({"imagenet"})


def select_templates(templates: list[str], which: TemplateChoice, dataset: str = "") -> list[str]:
    """``dataset`` -> the first (per-dataset) template; ``ensemble`` -> all of them, less the
    custom first one on ImageNet (ZeroshotCLIP2's 7 templates there)."""
    if which == "dataset":
        return templates[:1]
    if dataset in ENSEMBLE_WITHOUT_CUSTOM and len(templates) > 1:
        return templates[1:]
    return templates


@register_method
class ZeroShotCLIP(PromptMethod):
    name = "zeroshot"
    Options = ZeroShotOptions
    learns = False
    summary = "zero-shot CLIP with the dataset's hand-crafted template (or an ensemble)"

    def classifier(self) -> Tensor:
        templates = select_templates(self.templates, self.options.templates, self.dataset)
        return handcrafted_features(self.backbone, self.classnames, templates)
