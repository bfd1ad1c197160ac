"""The one narrow interface every vision-language backbone implements.

Methods never reach inside a backbone: they tokenize, embed tokens, splice their learnable
vectors into the embeddings, and call :meth:`Backbone.encode_text_embeddings`. Deep
(per-layer) prompts, the shared prefix and the speed options are arguments, never patches
inside the wrapped library. Each backbone runs its own library's modules in its own module;
the exact fast paths they share are library-free (``text_path``). The backbone is frozen: it
holds no learnable state of any method.
"""
from __future__ import annotations

import abc
import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .text_path import CausalTower, SharedPrefix, TextOptions, encode_causal, encode_chunked

#: the layers OpenAI's ``clip.model.convert_weights`` casts to fp16 (weights and biases); every
#: other tensor (layer norms, token / position / class embeddings, the temperature) stays fp32
HALF_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class Tokens:
    """A batch of tokenized texts, padded to the longest one.

    ``attention_mask`` is 1 on real tokens (start, words, end) and 0 on padding; padding is
    always at the end, so the end-of-text token sits at ``lengths - 1``.
    """

    ids: Tensor  # [N, L] long
    attention_mask: Tensor  # [N, L] long

    @property
    def lengths(self) -> Tensor:
        return self.attention_mask.sum(dim=1)

    @property
    def eot_index(self) -> Tensor:
        return self.lengths - 1

    def to(self, device: torch.device | str) -> "Tokens":
        return Tokens(self.ids.to(device), self.attention_mask.to(device))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, index: slice | Tensor) -> "Tokens":
        return Tokens(self.ids[index], self.attention_mask[index])

    def truncated(self) -> "Tokens":
        """Drop columns that are padding in every row (exact for causal and masked towers)."""
        width = int(self.lengths.max())
        return Tokens(self.ids[:, :width], self.attention_mask[:, :width])


ImageTransform = Callable[[object], Tensor]


class Backbone(nn.Module, abc.ABC):
    """A frozen CLIP-like model seen through the calls prompt tuning needs.

    Attributes every backbone sets:
      name:            the id it was built from (hub id, folder, ``tiny-random``, ``micro``)
      embed_dim:       width of the joint image-text space
      text_width:      width of a token embedding (what context vectors must match)
      vision_width:    width of an image token (what deep vision prompts must match)
      text_layers:     number of transformer blocks in the text tower
      vision_layers:   number of transformer blocks in the image tower that accept prompts
      max_text_length: the longest token sequence the text tower accepts
      image_size:      input resolution of the image tower
    """

    name: str
    embed_dim: int
    text_width: int
    vision_width: int
    text_layers: int
    vision_layers: int
    max_text_length: int
    image_size: int
    #: True when the text tower is causal (CLIP): hidden states of a shared prefix are
    #: identical for every class, so ``encode_text_embeddings`` computes them once.
    causal_text: bool = False
    #: True when the forward paths cast their inputs to ``dtype``, so ``half_weights`` works
    supports_half_weights: ClassVar[bool] = False

    # ---- text -------------------------------------------------------------------------
    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> Tokens:
        """Token ids with start and end tokens, padded to the longest text (not to 77)."""

    @abc.abstractmethod
    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Token ids [N, L] -> token embeddings [N, L, text_width] (no positions added)."""

    @abc.abstractmethod
    def encode_text_plain(
        self,
        embeddings: Tensor,
        tokens: Tokens,
        deep_prompts: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """The text tower's plain loop over the library's own blocks, all rows in one pass:
        [N, L, D] token embeddings -> [N, embed_dim] features, un-normalised.

        ``deep_prompts[j]`` ([n, text_width] or [N, n, text_width]) replaces the hidden
        states at positions ``1 .. n`` of the input to transformer block ``j + 1`` (the input
        to block 0 is ``embeddings`` itself, where the caller splices its own context). This
        is the reference every fast path is tested against.
        """

    def causal_tower(self) -> CausalTower | None:
        """The text blocks in the fast path's neutral terms (``text_path.CausalTower``), or
        None for a tower that is not causal (its prefix cannot be computed once)."""
        return None

    def encode_text_embeddings(
        self,
        embeddings: Tensor,
        tokens: Tokens,
        deep_prompts: Sequence[Tensor] | None = None,
        *,
        prefix: SharedPrefix = SharedPrefix(),
        options: TextOptions = TextOptions(),
    ) -> Tensor:
        """What prompt tuning calls: the same features as :meth:`encode_text_plain`, with
        less work and bounded memory.

        ``prefix`` is the caller's promise about the leading tokens its prompts share
        (``text_path.SharedPrefix``); a causal tower computes that prefix once per group, its
        gradient taken through each group's first row. ``options`` chooses prefix sharing,
        chunking and checkpointing.

        A backbone with a ``causal_tower`` runs ``text_path.encode_causal``; any other runs
        :meth:`encode_text_plain` on the real length, in chunks (what any tower can do).
        """
        prefix.check(len(tokens))
        tower = self.causal_tower()
        if tower is not None:
            # in the towers' dtype, as CLIP's ``token_embedding(text).type(self.dtype)``
            return encode_causal(tower, embeddings.to(self.dtype), tokens, deep_prompts, prefix, options)
        return encode_chunked(self.encode_text_plain, embeddings, tokens, deep_prompts, options)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Plain text features, the backbone's own encoder path (used for hand-crafted views)."""
        tokens = self.tokenize(texts).to(self.device)
        return self.encode_text_plain(self.embed_tokens(tokens.ids), tokens)

    def library_encode_text(self, texts: Sequence[str]) -> Tensor:
        """The wrapped library's own text encoder on ``texts``, un-normalised (no dvpt loop):
        the reference ``encode_text`` must equal (a contract test for every backbone)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its library's text encoder")

    # ---- images -----------------------------------------------------------------------
    @abc.abstractmethod
    def encode_image(self, images: Tensor, deep_prompts: Sequence[Tensor] | None = None) -> Tensor:
        """Images [B, 3, H, W] (already transformed) -> features [B, embed_dim], un-normalised.

        ``deep_prompts[0]`` ([n, vision_width]) is appended to the image tokens at the input;
        ``deep_prompts[j]`` replaces them at the input of block ``j``. Zero prompts (None or
        an empty list) give exactly the frozen model's features.
        """

    @abc.abstractmethod
    def train_transform(self) -> ImageTransform:
        """PIL image -> tensor with training augmentation (random resized crop, flip)."""

    @abc.abstractmethod
    def eval_transform(self) -> ImageTransform:
        """PIL image -> tensor, deterministic (the model's own preprocessing)."""

    # ---- misc -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def logit_scale(self) -> Tensor:
        """exp(learned temperature) of the pretrained model, a 0-dim tensor."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def identity(self) -> str:
        """A short hash of what determines this backbone's outputs (for cache keys).

        Computed once: the weights are frozen, so it cannot change.
        """
        cached = self.__dict__.get("_identity")
        if cached is None:
            cached = self.__dict__["_identity"] = self._compute_identity()
        return cached

    def _compute_identity(self) -> str:
        return hashlib.sha256(json.dumps(self.identity_fields(), sort_keys=True).encode()).hexdigest()[:16]

    def identity_fields(self) -> dict:
        return {"name": self.name}

    def freeze(self) -> "Backbone":
        """Turn off gradients of every backbone weight and put it in eval mode, for good."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        return self

    def train(self, mode: bool = True) -> "Backbone":  # noqa: D401 - a frozen backbone stays in eval
        return super().train(False)

    # ---- the official pure-fp16 precision (``precision: fp16-weights``) -------------------
    @property
    def dtype(self) -> torch.dtype:
        """The dtype the towers compute in outside autocast: fp16 after ``half_weights``, else
        fp32 (CLIP's ``model.dtype``, which is its patch embedding's weight dtype)."""
        return self.__dict__.get("_compute_dtype", torch.float32)

    def half_weights(self) -> "Backbone":
        """Cast the weights as the official code's CLIP has them under ``PREC: fp16``.

        OpenAI's ``clip.build_model`` runs ``convert_weights``: the weights and biases of every
        linear and convolution layer (attention projections, MLPs, the patch embedding, the
        text and image projections) become fp16; layer norms, the token, position and class
        embeddings and the temperature stay fp32 (``load_state_dict`` keeps a parameter's
        dtype). Its ``LayerNorm`` computes in fp32 and returns the input's dtype; hooks on
        the library's layer norms do the same here, so activations stay fp16 between layers.
        In place and for good: ``load_backbone(..., half=True)`` gives such a backbone its
        own cache entry, so no fp32 run ever sees it.
        """
        if not self.supports_half_weights:
            raise ConfigError(f"precision fp16-weights is implemented for transformers CLIP backbones, not "
                              f"{self.name!r}; use precision fp16 (autocast) or fp32 with this backbone")
        if self.dtype == torch.float16:
            return self
        for module in self.modules():
            if isinstance(module, HALF_LAYERS):
                for param in (module.weight, module.bias):
                    if param is not None:
                        param.data = param.data.half()
            elif isinstance(module, nn.LayerNorm):
                module.register_forward_pre_hook(_norm_in_fp32)
                module.register_forward_hook(self._norm_out)
        self.__dict__["_compute_dtype"] = torch.float16
        self.__dict__.pop("_identity", None)  # the weights changed: so does every cache key
        return self

    def _norm_out(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        """A layer norm's fp32 result back in the towers' dtype (CLIP's ``ret.type(orig_type)``)."""
        return output.to(self.dtype)

    @contextlib.contextmanager
    def fp32_weights(self) -> Iterator["Backbone"]:
        """The half weights in fp32 for the duration, for a teacher the official code runs on
        CLIP cast to float (ProGrad's zero-shot teacher, PromptSRC's frozen text features).

        Exact both ways: every fp16 value is an fp32 value, so the teacher sees the weights
        ``clip_model.float()`` gives, and the fp16 weights come back bit for bit. A no-op on
        an fp32 backbone. Meant for ``torch.no_grad()`` code; tensors that a pending backward
        saved see the same values again once the block ends.
        """
        if self.dtype != torch.float16:
            yield self
            return
        halves = [p for p in self.parameters() if p.dtype == torch.float16]
        for param in halves:
            param.data = param.data.float()
        self.__dict__["_compute_dtype"] = torch.float32
        try:
            yield self
        finally:
            for param in halves:
                param.data = param.data.half()
            self.__dict__["_compute_dtype"] = torch.float16


def _norm_in_fp32(module: nn.Module, args: tuple) -> tuple:
    """A layer norm's input in fp32, as CLIP's ``LayerNorm.forward`` computes it."""
    return (args[0].float(), *args[1:])


def weight_fingerprint(module: nn.Module) -> str:
    """A hash of every parameter's and buffer's name, dtype, shape and bytes.

    Exact on purpose: a float sum of the weights (what this replaced) changes in its last bits
    with the thread count and the reduction order, so the same model got two cache keys. Bytes
    are read on the CPU, so the key does not depend on the device either.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
