"""Deep (per-layer) prompts of the multimodal methods (MaPLe, PromptSRC).

With prompt depth J, a text prompt for class c is

    [start] v_1 ... v_M  <rest of the init words> <tokens of "classname.">  [end]

at the input of the text tower (v_1..v_M learnable, as CoOp), and at the input of each text
block j = 1 .. J-1 the hidden states at positions 1..M are replaced by a learnable set
P^t_j ([M, text_width]). On the image side, P^v_0 is appended to the image tokens at the
input and replaced by P^v_j at the input of blocks j = 1 .. J-1.

The context keeps the whole init text: with ``ctx_init = "a photo of a"`` and M = 2 the
prompt reads "[v_1 v_2] of a {class}." (v initialised from "a photo"), exactly as MaPLe's
reference code builds it. With M equal to the number of init tokens it is CoOp's prompt.

A depth larger than a tower's number of blocks is clamped to it (the extra prompts would
never be read; a parameter that gets no gradient would only confuse the optimiser).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor, nn

from ..backbones.base import Backbone
from ..errors import ConfigError
from .handcrafted import readable
from .learner import PLACEHOLDER
from .text_encoding import SharedPrefix, TextOptions, encode_prompts

log = logging.getLogger(__name__)


def tower_depth(depth: int, layers: int, tower: str) -> int:
    """The prompt depth a tower of ``layers`` blocks can use (>= 1; clamped with a note)."""
    if depth < 1:
        raise ConfigError(f"prompt depth must be >= 1 (1 = input-level prompts only), got {depth}")
    if depth > layers:
        log.info("prompt depth %d exceeds the %d blocks of the %s tower; using %d", depth, layers, tower, layers)
    return min(depth, layers)


def normal_prompts(count: int, n_tokens: int, width: int, std: float = 0.02) -> nn.ParameterList:
    """``count`` prompt sets [n_tokens, width] drawn from N(0, std^2) (seeded by the run)."""
    return nn.ParameterList(nn.Parameter(torch.randn(n_tokens, width) * std) for _ in range(count))


class DeepTextPrompts(nn.Module):
    """Input context ``ctx`` [M, D] plus ``deep`` prompts for text blocks 1 .. J-1."""

    #: how its prompts go through the text tower; set by ``PromptMethod.set_text_options``
    text_options: TextOptions = TextOptions()

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        n_ctx: int,
        ctx_init: str | None,
        depth: int,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self._backbone = [backbone]  # a reference, not a submodule: never trained or saved here
        if n_ctx < 1:
            raise ConfigError(f"n_ctx must be >= 1, got {n_ctx}")
        self.n_ctx = n_ctx
        self.prefix_text = ctx_init or " ".join([PLACEHOLDER] * n_ctx)
        self.ctx = nn.Parameter(self._initial_context(ctx_init, init_std))
        self.depth = tower_depth(depth, backbone.text_layers, "text")
        self.deep = normal_prompts(self.depth - 1, n_ctx, backbone.text_width, init_std)
        self.set_classnames(classnames)

    @property
    def backbone(self) -> Backbone:
        return self._backbone[0]

    def _initial_context(self, ctx_init: str | None, std: float) -> Tensor:
        """The first M token embeddings of ``ctx_init``, or N(0, std^2) without init words."""
        if not ctx_init:
            return torch.randn(self.n_ctx, self.backbone.text_width) * std
        init = self.backbone.tokenize([ctx_init])
        available = int(init.lengths[0]) - 2
        if self.n_ctx > available:
            raise ConfigError(
                f"n_ctx={self.n_ctx} exceeds the {available} tokens of ctx_init {ctx_init!r}; "
                "lower n_ctx, use longer init words, or set ctx_init: '' for random context"
            )
        with torch.no_grad():
            return self.backbone.embed_tokens(init.ids[:1, 1 : 1 + self.n_ctx])[0].float().cpu()

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Re-tokenise the fixed parts for another class list (novel classes)."""
        self.classnames = list(classnames)
        self.tokens = self.backbone.tokenize([f"{self.prefix_text} {readable(c)}." for c in self.classnames])
        with torch.no_grad():
            embedded = self.backbone.embed_tokens(self.tokens.ids).float()
        device = self.ctx.device
        # derived from the class names, so not persistent
        self.register_buffer("token_prefix", embedded[:, :1].clone().to(device), persistent=False)
        self.register_buffer("token_suffix", embedded[:, 1 + self.n_ctx :].clone().to(device), persistent=False)

    def embeddings(self) -> Tensor:
        """Token embeddings [C, L, D] of every class prompt."""
        ctx = self.ctx.unsqueeze(0).expand(len(self.classnames), -1, -1)
        return torch.cat([self.token_prefix.to(ctx.dtype), ctx, self.token_suffix.to(ctx.dtype)], dim=1)

    def sources(self) -> list[Tensor]:
        """[ctx, P^t_1, ..., P^t_{J-1}]: the text prompt of every prompted block, input first."""
        return [self.ctx, *self.deep]

    def forward(self) -> Tensor:
        """Text features [C, E] (un-normalised) of the deep prompts of every class.

        [start] + context is one tensor broadcast to every class (and the deep prompts are
        shared too), so a causal tower may compute that prefix once.
        """
        return encode_prompts(self.backbone, self.embeddings(), self.tokens, list(self.deep),
                              SharedPrefix(1 + self.n_ctx), self.text_options)


class VisionPrompts(nn.Module):
    """Independent image prompts P^v_0 .. P^v_{J-1} ([n, vision_width] each, N(0, 0.02^2))."""

    def __init__(self, backbone: Backbone, n_ctx: int, depth: int, init_std: float = 0.02) -> None:
        super().__init__()
        if n_ctx < 1:
            raise ConfigError(f"n_ctx_vision must be >= 1, got {n_ctx}")
        self.depth = tower_depth(depth, backbone.vision_layers, "image")
        self.prompts = normal_prompts(self.depth, n_ctx, backbone.vision_width, init_std)

    def forward(self) -> list[Tensor]:
        return list(self.prompts)
