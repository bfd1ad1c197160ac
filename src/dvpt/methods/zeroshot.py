"""Zero-shot CLIP: classify with hand-crafted prompts, nothing learned.

    logits = s * <f(x), t_c>,   t_c = normalise(mean_k normalise(g(template_k(c))))

With ``templates: dataset`` the per-dataset template (CoOp's CUSTOM_TEMPLATES) alone; with
``ensemble`` every template of the dataset averaged in feature space (ZeroshotCLIP2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..config.fields import Validated
from ..prompts.handcrafted import handcrafted_features
from .base import PromptMethod, register_method


#: which hand-crafted templates: the dataset's own, or all of them averaged
TemplateChoice = Literal["dataset", "ensemble"]


@dataclass
class ZeroShotOptions(Validated):
    config_key = "options"

    templates: TemplateChoice = "dataset"


def select_templates(templates: list[str], which: TemplateChoice) -> list[str]:
    """``dataset`` -> the first (per-dataset) template; ``ensemble`` -> all of them."""
    return templates[:1] if which == "dataset" else templates


@register_method
class ZeroShotCLIP(PromptMethod):
    name = "zeroshot"
    Options = ZeroShotOptions
    summary = "zero-shot CLIP with the dataset's hand-crafted template (or an ensemble)"

    def classifier(self) -> Tensor:
        templates = select_templates(self.templates, self.options.templates)
        return handcrafted_features(self.backbone, self.classnames, templates)
