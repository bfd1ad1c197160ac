"""MaPLe (Khattak et al., CVPR 2023): deep text prompts coupled to deep vision prompts.

    text:   [v_1 .. v_M] at the input, P^t_j at text blocks j = 1 .. J-1
    image:  P^v_j = F_j(P^t_j)  (P^t_0 = v),  appended at the input, replaced at blocks 1 .. J-1
    logits = s * <f(x; P^v), t_c(P^t)>,   L = CE(logits, y)

F_j are linear couplings text_width -> vision_width; F_1 .. F_{J-1} start as copies of one
initialisation and F_0 has its own, as in the reference code. ``coupling: false`` drops the
image prompts (deep language prompting only); with ``prompt_depth: 1`` that is CoOp exactly.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass


import torch.nn.functional as F
from torch import Tensor, nn

from ..config.schema import PositiveInt
from ..prompts.deep import DeepTextPrompts, tower_depth
from .base import Batch, MethodOptions, PromptMethod, register_method


@dataclass
class MaPLeOptions(MethodOptions):
    #: learnable text tokens per prompted block (vision tokens are as many)
    n_ctx: PositiveInt = 2
    #: init words; the first n_ctx tokens initialise the context, the rest stay as words
    ctx_init: str = "a photo of a"
    #: J: blocks 0 .. J-1 of each tower carry prompts (clamped to the tower's depth)
    prompt_depth: PositiveInt = 9
    #: false: no vision prompts (text-only deep prompts; depth 1 = CoOp)
    coupling: bool = True


def couplings(text_width: int, vision_width: int, count: int) -> nn.ModuleList:
    """F_0 with its own init, F_1 .. F_{count-1} deep copies of one init (reference code)."""
    if count == 0:
        return nn.ModuleList()
    deep = nn.Linear(text_width, vision_width)
    first = nn.Linear(text_width, vision_width)
    return nn.ModuleList([first, *(copy.deepcopy(deep) for _ in range(count - 1))])


@register_method
class MaPLe(PromptMethod):
    name = "maple"
    Options = MaPLeOptions
    uses_image_tower = True
    summary = "multi-modal deep prompts, vision prompts coupled to text prompts (Khattak et al., CVPR 2023)"

    def build(self) -> None:
        backbone, options = self.backbone, self.options
        self.text_prompts = DeepTextPrompts(
            backbone, self.classnames, options.n_ctx, options.ctx_init or None, options.prompt_depth
        )
        count = 0
        if options.coupling:
            count = min(self.text_prompts.depth, tower_depth(options.prompt_depth, backbone.vision_layers, "image"))
        self.couplers = couplings(backbone.text_width, backbone.vision_width, count)
        # without vision prompts the image tower is the frozen one: cached features apply
        self.uses_image_tower = count > 0

    def fp16_parts(self) -> list[nn.Module | nn.Parameter]:
        """The context and its coupler: MaPLe ``trainers/maple.py`` builds ``self.proj`` (the
        512 -> 768 map of the input context) and runs ``self.proj.half()``; the deeper text
        prompts (``nn.Parameter(torch.empty(n_ctx, 512))``) and their couplers
        (``nn.Linear``) stay fp32 and are cast to half where they enter a block."""
        return [*super().fp16_parts(), *self.couplers[:1]]

    def vision_prompts(self) -> list[Tensor]:
        """[F_0(v), F_1(P^t_1), ...]: one image prompt set per prompted image block."""
        return [f(p) for f, p in zip(self.couplers, self.text_prompts.sources())]

    def classifier(self) -> Tensor:
        return F.normalize(self.text_prompts().float(), dim=-1)

    def image_features(self, batch: Batch) -> Tensor:
        if not self.uses_image_tower:
            return super().image_features(batch)
        return F.normalize(self.backbone.encode_image(batch.images, self.vision_prompts()).float(), dim=-1)
