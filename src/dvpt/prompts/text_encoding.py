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
from ..backbones.text_path import SharedPrefix, TextOptions

__all__ = ["SharedPrefix", "TextOptions", "encode_prompts"]


def encode_prompts(backbone: Backbone, embeddings: Tensor, tokens: Tokens, deep_prompts: Sequence[Tensor] | None = None,
                   prefix: SharedPrefix = SharedPrefix(), options: TextOptions = TextOptions()) -> Tensor:
    """Text features [N, E] (un-normalised) of prompt embeddings [N, L, D]; ``prefix`` is the
    promise about the leading tokens the prompts share (``SharedPrefix``)."""
    return backbone.encode_text_embeddings(embeddings, tokens, deep_prompts, prefix=prefix, options=options)
