"""What every adapter of a library's CLIP shares: the causal text fast path over its blocks,
CLIP's image preprocessing and its learned temperature. The adapters (transformers, open_clip) differ only in how they reach the towers."""
from __future__ import annotations

import abc

from torch import Tensor

from . import text_path, transforms
from .base import Backbone, Tokens
from .text_path import CausalTower, TextOptions


class LibraryCLIP(Backbone):
    """A ``Backbone`` around ``self.model``, a library CLIP with a ``logit_scale`` parameter (the
    log temperature), whose images are resized, cropped and normalised with ``self.mean`` and
    ``self.std`` at ``self.image_size`` (the adapter sets the three from the model's config)."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @abc.abstractmethod
    def _causal_tower(self) -> CausalTower:
        """The library's text blocks in the fast path's neutral terms (see ``text_path``)."""

    def encode_text_embeddings(self, embeddings: Tensor, tokens: Tokens, deep_prompts=None, *,
                               shared_prefix: int = 0, prefix_groups: int = 1,
                               options: TextOptions = TextOptions()) -> Tensor:
        return text_path.encode_causal(self._causal_tower(), embeddings, tokens, deep_prompts,
                                       shared_prefix, prefix_groups, options)

    def train_transform(self):
        return transforms.train_transform(self.image_size, self.mean, self.std)

    def eval_transform(self):
        return transforms.eval_transform(self.image_size, self.mean, self.std)

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.detach().exp()
