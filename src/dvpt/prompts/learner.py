"""CoOp's prompt learner: learnable context vectors spliced in front of each class name.

A prompt for class c is the token sequence

    [start] v_1 ... v_M  [fixed tokens]  <tokens of "classname.">  [end]

where v_1..v_M are learnable (shared by all classes, or one set per class) and the fixed
tokens are empty except in ProGrad's official word-count initialisation
(``set_context_text``). Initialised from words ("a photo of a"), the prompt is
token-for-token the hand-written sentence, so its text features equal the backbone's own
features of "a photo of a {class}." (tested).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..backbones.base import Backbone
from ..errors import ConfigError
from .text_encoding import SharedPrefix, TextOptions, encode_prompts  # the one place prompts meet the text tower
from .handcrafted import readable

PLACEHOLDER = "X"


class PromptLearner(nn.Module):
    """Learnable context ``ctx`` ([M, D], or [C, M, D] when class-specific)."""

    #: how its prompts go through the text tower; set by ``PromptMethod.set_text_options``
    text_options: TextOptions = TextOptions()

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        n_ctx: int = 4,
        ctx_init: str | None = "a photo of a",
        class_specific: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self._backbone = [backbone]  # a reference, not a submodule: never trained or saved here
        self.class_specific = class_specific
        self.ctx_init = ctx_init or None
        if self.ctx_init:
            init = backbone.tokenize([self.ctx_init])
            init_ids, n_ctx = init.ids[0], int(init.lengths[0]) - 2
            with torch.no_grad():
                vectors = backbone.embed_tokens(init_ids[1 : 1 + n_ctx].unsqueeze(0))[0].float().cpu()
        else:
            if n_ctx < 1:
                raise ConfigError(f"n_ctx must be >= 1 without ctx_init, got {n_ctx}")
            vectors = torch.randn(n_ctx, backbone.text_width) * init_std  # seeded by the run
        self.n_ctx = n_ctx
        self.ctx_prefix_text = self.ctx_init or " ".join([PLACEHOLDER] * n_ctx)
        if class_specific:
            vectors = vectors.unsqueeze(0).repeat(len(classnames), 1, 1)
        self.ctx = nn.Parameter(vectors)
        self.set_classnames(classnames)

    @property
    def backbone(self) -> Backbone:
        return self._backbone[0]

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Re-tokenise for another class list (novel classes, new names at predict time)."""
        if self.class_specific and self.ctx.dim() == 3 and len(classnames) != self.ctx.shape[0]:
            raise ConfigError(
                f"class-specific context was learned for {self.ctx.shape[0]} classes and cannot "
                f"classify {len(classnames)} other classes; use shared context (class_specific: false)"
            )
        self.classnames = list(classnames)
        texts = [f"{self.ctx_prefix_text} {readable(c)}." for c in self.classnames]
        tokens = self.backbone.tokenize(texts)
        head = self.backbone.tokenize([self.ctx_prefix_text])
        if int(head.lengths[0]) - 2 < self.n_ctx:
            raise ConfigError(f"context text {self.ctx_prefix_text!r} is fewer than {self.n_ctx} tokens")
        self.tokens = tokens
        with torch.no_grad():
            embedded = self.backbone.embed_tokens(tokens.ids).float()
        # buffers of the fixed parts; not persistent: they are derived from the class names
        self.register_buffer("token_prefix", embedded[:, :1].clone(), persistent=False)
        self.register_buffer("token_suffix", embedded[:, 1 + self.n_ctx :].clone(), persistent=False)

    def set_context_text(self, text: str) -> None:
        """Write the prompts as ``text`` + class name, the first ``n_ctx`` tokens of ``text``
        being the learnable positions and any tokens after them a fixed part of every prompt.

        ProGrad's official prompts have such a fixed part: it counts context words with
        ``split(" ")``, so a template whose words make more BPE tokens than words ("pet," is
        two) leaves its last tokens outside the context.
        """
        self.ctx_prefix_text = text
        self.set_classnames(self.classnames)

    def context(self, shift: Tensor | None = None) -> Tensor:
        """Context per class [C, M, D]; ``shift`` ([D], [C, D] or [B, D] handled by callers)."""
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(len(self.classnames), -1, -1)
        if shift is not None:
            ctx = ctx + shift.unsqueeze(-2)
        return ctx

    def embeddings(self, ctx: Tensor | None = None) -> Tensor:
        """Token embeddings [C, L, D] of every class prompt (``ctx`` [C, M, D] optional)."""
        ctx = self.context() if ctx is None else ctx
        prefix = self.token_prefix.to(ctx.dtype)
        suffix = self.token_suffix.to(ctx.dtype)
        return torch.cat([prefix, ctx, suffix], dim=1)

    @property
    def shared_prefix_length(self) -> int:
        """Leading tokens that are one tensor for every class prompt: [start] + the context
        when it is shared, [start] alone when it is class-specific."""
        return 1 + self.n_ctx if self.ctx.dim() == 2 else 1

    def forward(self, ctx: Tensor | None = None, deep_prompts: Sequence[Tensor] | None = None) -> Tensor:
        """Text features [C, E] (un-normalised) of the prompts."""
        # a ``ctx`` passed in may differ per class (e.g. shifted per class): only [start] is shared
        prefix = self.shared_prefix_length if ctx is None else 1
        return encode_prompts(self.backbone, self.embeddings(ctx), self.tokens, deep_prompts, SharedPrefix(prefix),
                              self.text_options)

