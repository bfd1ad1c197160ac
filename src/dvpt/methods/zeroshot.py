"""Zero-shot CLIP: classify with hand-crafted prompts, nothing learned.

    logits = s * <f(x), t_c>,   t_c = normalise(mean_k normalise(g(template_k(c))))

With ``templates: dataset`` the per-dataset template (CoOp's CUSTOM_TEMPLATES) alone; with
``ensemble`` every template of the dataset averaged in feature space (ZeroshotCLIP2).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..prompts.handcrafted import handcrafted_features
from .base import PromptMethod, register_method


@dataclass
class ZeroShotOptions:
    templates: str = "dataset"  # dataset | ensemble


def select_templates(templates: list[str], which: str) -> list[str]:
    """``dataset`` -> the first (per-dataset) template; ``ensemble`` -> all of them."""
    if which not in ("dataset", "ensemble"):
        from ..errors import ConfigError

        raise ConfigError(f"templates must be 'dataset' or 'ensemble', got {which!r}")
    return templates[:1] if which == "dataset" else templates


@register_method
class ZeroShotCLIP(PromptMethod):
    name = "zeroshot"
    Options = ZeroShotOptions
    summary = "zero-shot CLIP with the dataset's hand-crafted template (or an ensemble)"

    def classifier(self) -> Tensor:
        templates = select_templates(self.templates, self.options.templates)
        return handcrafted_features(self.backbone, self.classnames, templates)
