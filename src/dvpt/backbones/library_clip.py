"""What every adapter of a library's CLIP shares: the causal text fast path over its blocks,
CLIP's image preprocessing and its learned temperature. The adapters (transformers, open_clip) differ only in how they reach the towers."""
from __future__ import annotations

import abc

from torch import Tensor

from . import transforms
from .base import Backbone
from .text_path import CausalTower


class LibraryCLIP(Backbone):
    """A ``Backbone`` around ``self.model``, a library CLIP with a ``logit_scale`` parameter (the
    log temperature), whose images are resized, cropped and normalised with ``self.mean`` and
    ``self.std`` at ``self.image_size`` (the adapter sets the three from the model's config)."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @abc.abstractmethod
    def causal_tower(self) -> CausalTower:
        """The library's text blocks in the fast path's neutral terms (see ``text_path``)."""

    def train_transform(self):
        return transforms.train_transform(self.image_size, self.mean, self.std)

    def eval_transform(self):
        return transforms.eval_transform(self.image_size, self.mean, self.std)

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.detach().exp()
