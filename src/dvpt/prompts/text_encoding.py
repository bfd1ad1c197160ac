"""Where prompts meet the text tower: one call to the backbone's interface.

The exact fast paths (real length, a prefix shared by every prompt computed once, chunks,
gradient checkpointing) belong to each backbone, which runs its own library's blocks (see
``dvpt.backbones.text_path``). This module knows nothing of any library: it passes the
prompts, the promise about their shared prefix, and the options the method was given.

Options travel one way: a :class:`TextOptions` held by the method (``PromptMethod.
set_text_options``, set once by the session from ``cfg.text``, by ``dvpt bench`` and by
``load_prompt``), handed to every learner and from there to this call.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from ..backbones.base import Backbone, Tokens
from ..backbones.text_path import TextOptions

__all__ = ["TextOptions", "encode_prompts"]


def encode_prompts(
    backbone: Backbone,
    embeddings: Tensor,
    tokens: Tokens,
    deep_prompts: Sequence[Tensor] | None = None,
    prefix_length: int = 0,
    prefix_groups: int = 1,
    options: TextOptions = TextOptions(),
) -> Tensor:
    """Text features [N, E] (un-normalised) of prompt embeddings [N, L, D].

    ``prefix_length`` is the caller's promise that ``embeddings[:, :prefix_length]`` is one
    tensor broadcast to every row of a group (start token + shared context), the N rows being
    ``prefix_groups`` consecutive groups of equal size (CoOp: one group; CoCoOp: one group of
    C class prompts per image, whose context is shifted per image). 0 = no promise.
    """
    return backbone.encode_text_embeddings(embeddings, tokens, deep_prompts, shared_prefix=prefix_length,
                                           prefix_groups=prefix_groups, options=options)
