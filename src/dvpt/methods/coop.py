"""CoOp (Zhou et al., 2022): learn the context words of the prompt.

    t_c = g([v_1 ... v_M, w(c)]),   logits = s * <f(x), t_c / |t_c|>,   L = CE(logits, y)
"""
from __future__ import annotations

from dataclasses import dataclass


import torch.nn.functional as F
from torch import Tensor

from ..config.schema import PositiveInt
from ..prompts.learner import PromptLearner
from .base import MethodOptions, PromptMethod, register_method


@dataclass
class CoOpOptions(MethodOptions):
    n_ctx: PositiveInt = 4
    #: initial context words; empty = random N(0, 0.02) with n_ctx vectors
    ctx_init: str = "a photo of a"
    class_specific: bool = False


@register_method
class CoOp(PromptMethod):
    name = "coop"
    Options = CoOpOptions
    summary = "learnable context vectors shared by all classes (Zhou et al., IJCV 2022)"

    def build(self) -> None:
        o = self.options
        self.prompt_learner = PromptLearner(self.backbone, self.classnames, o.n_ctx, self.context_init(), o.class_specific)

    def context_init(self) -> str | None:
        """Words the context starts as (None: random N(0, 0.02))."""
        return self.options.ctx_init or None

    def classifier(self) -> Tensor:
        return F.normalize(self.prompt_learner().float(), dim=-1)
