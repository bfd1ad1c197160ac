"""CoCoOp (Zhou et al., CVPR 2022): prompts conditioned on each image.

    pi(x) = W_2 relu(W_1 f(x)),   t_c(x) = g([v_1 + pi(x), ..., v_M + pi(x), w(c)])
    logits[b, c] = s * <f(x_b), t_c(x_b) / |t_c(x_b)|>,   L = CE(logits, y)

One shift per image, the same for every class of that image. The text tower therefore runs
B * C prompts per batch (hence the published batch size of 1); ``image_chunk`` bounds how
many run at once. In a causal tower the start token and the shifted context are one prefix
per image, computed once for its C prompts. Only the text side learns, so training works on
cached image features.
"""
from __future__ import annotations

from dataclasses import dataclass


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.base import Tokens
from ..config.schema import NonNegativeInt, PositiveInt
from ..prompts.learner import PromptLearner
from ..prompts.text_encoding import SharedPrefix, encode_prompts
from .base import Batch, MethodOptions, PromptMethod, register_method

#: with ``image_chunk: 0``, images per text-tower call are chosen so that about this many
#: prompts (images x classes) are encoded at once
PROMPT_BUDGET = 4096


@dataclass
class CoCoOpOptions(MethodOptions):
    n_ctx: PositiveInt = 4
    #: initial context words; empty = random N(0, 0.02) with n_ctx vectors
    ctx_init: str = "a photo of a"
    #: images whose C prompts go through the text tower together; 0 = about
    #: PROMPT_BUDGET prompts per call
    image_chunk: NonNegativeInt = 0


def meta_net(in_dim: int, out_dim: int) -> nn.Sequential:
    """CoCoOp's bottleneck: Linear(d, d/16), ReLU, Linear(d/16, text width)."""
    hidden = max(1, in_dim // 16)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


@register_method
class CoCoOp(PromptMethod):
    name = "cocoop"
    Options = CoCoOpOptions
    summary = "context shifted per image by a small meta-network (Zhou et al., CVPR 2022)"

    def build(self) -> None:
        self.prompt_learner = PromptLearner(self.backbone, self.classnames, self.options.n_ctx,
                                            self.options.ctx_init or None)
        self.meta_net = meta_net(self.backbone.embed_dim, self.backbone.text_width)

    def fp16_parts(self) -> list[nn.Module | nn.Parameter]:
        """The context and the meta-net: CoOp ``trainers/cocoop.py`` runs ``self.meta_net.half()``
        when ``PREC == "fp16"``."""
        return [*super().fp16_parts(), self.meta_net]

    def classifier(self) -> Tensor:
        raise NotImplementedError("CoCoOp's class features depend on the image; use logits(batch)")

    def chunk_size(self) -> int:
        if self.options.image_chunk > 0:
            return self.options.image_chunk
        return max(1, PROMPT_BUDGET // max(1, len(self.classnames)))

    def logits(self, batch: Batch, classifier: Tensor | None = None) -> Tensor:
        """[B, C]; ``classifier`` is ignored (there is no image-independent one)."""
        feats = self.image_features(batch)
        shifts = self.meta_net(feats.to(self.meta_net[0].weight.dtype))  # [B, D]
        step = self.chunk_size()
        rows = [
            self._chunk_logits(feats[i : i + step], shifts[i : i + step]) for i in range(0, feats.shape[0], step)
        ]
        return torch.cat(rows) if rows else feats.new_empty(0, len(self.classnames))

    def _chunk_logits(self, feats: Tensor, shifts: Tensor) -> Tensor:
        """Logits of a few images: their B * C prompts through the text tower in one call."""
        learner = self.prompt_learner
        n_images, n_classes = feats.shape[0], len(self.classnames)
        ctx = learner.context().unsqueeze(0) + shifts[:, None, None, :]  # [b, C, M, D]
        prefix = learner.token_prefix.to(ctx.dtype).expand(n_images, -1, -1, -1)
        suffix = learner.token_suffix.to(ctx.dtype).expand(n_images, -1, -1, -1)
        embeddings = torch.cat([prefix, ctx, suffix], dim=2).flatten(0, 1)  # [b*C, L, D]
        tokens = Tokens(learner.tokens.ids.repeat(n_images, 1), learner.tokens.attention_mask.repeat(n_images, 1))
        # [start] + (v + pi(x)) is the same for the C prompts of one image: a prefix per image
        text = encode_prompts(self.backbone, embeddings, tokens, prefix=SharedPrefix(learner.shared_prefix_length, n_images),
                              options=self.text_options)
        text = F.normalize(text.float(), dim=-1)
        text = text.view(n_images, n_classes, -1)
        return self.logit_scale * torch.einsum("be,bce->bc", feats, text)
