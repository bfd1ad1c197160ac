"""KgCoOp (Yao et al., CVPR 2023): CoOp kept close to the hand-crafted prompt's features.

    t_c = g([v_1 ... v_M, w(c)]),   h_c = g("<template>(c)")   (frozen, computed once)
    L = CE(s * <f(x), t_c / |t_c|>, y) + W * (1 - mean_c cos(t_c, h_c)),   W = 8

The consistency term keeps the learned class features near the general knowledge of the
hand-crafted ones, which is what keeps novel-class accuracy up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from ..config.schema import NonNegativeFloat
from ..prompts.handcrafted import handcrafted_features, method_template
from .base import Batch, StepContext, cross_entropy_terms, register_method, scores
from .coop import CoOp, CoOpOptions

#: KgCoOp's template set is CoOp's with one change (DTD)
KGCOOP_TEMPLATES: dict[str, str] = {"{} texture.": "a photo of a {}, a type of texture."}


@dataclass
class KgCoOpOptions(CoOpOptions):
    #: weight W of the consistency term
    weight: NonNegativeFloat = 8.0
    #: hand-crafted template with "{}"; empty = the dataset's template (KgCoOp's variant)
    template: str = ""


def kgcoop_template(templates: Sequence[str], override: str = "") -> str:
    """The dataset's first template, as KgCoOp's own template table has it."""
    return method_template(templates, KGCOOP_TEMPLATES, override)


def consistency(learned: Tensor, handcrafted: Tensor) -> Tensor:
    """1 - mean_c cos(learned_c, handcrafted_c) (both [C, E]; any norm)."""
    return 1.0 - F.cosine_similarity(learned.float(), handcrafted.float(), dim=-1).mean()


@register_method
class KgCoOp(CoOp):
    name = "kgcoop"
    Options = KgCoOpOptions
    summary = "CoOp + consistency with the hand-crafted text features (Yao et al., CVPR 2023)"

    def handcrafted(self) -> Tensor:
        """Frozen [C, E] features of the template (cached across steps)."""
        template = kgcoop_template(self.templates, self.options.template)
        return handcrafted_features(self.backbone, self.classnames, [template])

    def losses(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        text = self.classifier()
        terms = cross_entropy_terms(scores(self.image_features(batch), text, self.logit_scale), batch.labels)
        kg = consistency(text, self.handcrafted())
        terms["kg"] = kg.detach()
        terms["loss"] = terms["loss"] + self.options.weight * kg
        return terms
