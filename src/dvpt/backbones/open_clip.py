"""open_clip models behind the backbone interface (``openclip-tiny-random``).

open_clip's text tower has no embeddings-in entry point either, so this adapter runs the
library's own pieces (position embeddings, residual blocks with the causal mask, final norm,
pooling at the end-of-text token, projection); deep prompts are arguments of that loop, as in
``hf_clip``. The tower is not exposed as a ``CausalTextTower``, so prompt encoding takes the
plain path (no prefix sharing) for these models.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..registry import BACKBONES
from . import transforms
from .base import Backbone, Tokens

#: A CLIP small enough for CPU tests, in open_clip's own model-config format.
TINY_CONFIG: dict = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


class OpenCLIPBackbone(Backbone):
    """A frozen open_clip ``CLIP`` plus open_clip's tokenizer and CLIP preprocessing."""

    causal_text = True

    def __init__(self, model, tokenizer, name: str, config: dict) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.config = config
        self.mean, self.std = transforms.CLIP_MEAN, transforms.CLIP_STD
        vc, tc = config["vision_cfg"], config["text_cfg"]
        self.embed_dim = int(config["embed_dim"])
        self.text_width = int(tc["width"])
        self.vision_width = int(vc["width"])
        self.text_layers = int(tc["layers"])
        self.vision_layers = int(vc["layers"])
        self.max_text_length = int(tc["context_length"])
        self.image_size = int(vc["image_size"])
        self.freeze()

    @classmethod
    def from_config(cls, config: dict, name: str, seed: int = 0) -> "OpenCLIPBackbone":
        """Random weights drawn with ``seed`` (deterministic), no download."""
        from open_clip.model import CLIP
        from open_clip.tokenizer import SimpleTokenizer

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIP(**config)
        return cls(model.eval(), SimpleTokenizer(context_length=config["text_cfg"]["context_length"]), name, config)

    def identity_fields(self) -> dict:
        weights = (self.model.token_embedding.weight, self.model.visual.conv1.weight)
        return {
            "name": self.name,
            "library": "open_clip",
            "config": self.config,
            "weights": [float(w.detach().cpu().double().sum()) for w in weights],
        }

    # ---- text ---------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tokens:
        ids = self.tokenizer(list(texts)).long()
        mask = (ids != 0).long()
        return Tokens(ids, mask).truncated()

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.model.token_embedding(ids.to(self.device))

    def encode_text_embeddings(self, embeddings: Tensor, tokens: Tokens, deep_prompts=None) -> Tensor:
        model = self.model
        tokens = tokens.to(embeddings.device)
        length = embeddings.shape[1]
        hidden = embeddings + model.positional_embedding[:length].to(embeddings.dtype)
        mask = model.attn_mask[:length, :length].to(hidden.device, hidden.dtype)
        for index, block in enumerate(model.transformer.resblocks):
            if deep_prompts and 0 < index <= len(deep_prompts):
                hidden = _replace_prefix(hidden, deep_prompts[index - 1])
            hidden = block(hidden, attn_mask=mask)
        hidden = model.ln_final(hidden)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), tokens.eot_index]
        return pooled @ model.text_projection

    # ---- images -------------------------------------------------------------------------
    def encode_image(self, images: Tensor, deep_prompts=None) -> Tensor:
        visual = self.model.visual
        x = visual.conv1(images.to(self.device, visual.conv1.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        n_patch = x.shape[1]
        if deep_prompts:
            x = torch.cat([x, deep_prompts[0].to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        x = visual.ln_pre(x)
        for index, block in enumerate(visual.transformer.resblocks):
            if deep_prompts and 0 < index < len(deep_prompts):
                prompt = deep_prompts[index].to(x.dtype).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :n_patch], prompt], dim=1)
            x = block(x)
        pooled = visual.ln_post(x[:, 0])
        return pooled @ visual.proj

    def train_transform(self):
        return transforms.train_transform(self.image_size, self.mean, self.std)

    def eval_transform(self):
        return transforms.eval_transform(self.image_size, self.mean, self.std)

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.detach().exp()


def _replace_prefix(hidden: Tensor, prompt: Tensor) -> Tensor:
    """Put ``prompt`` ([n, D] or [N, n, D]) at positions 1..n of ``hidden`` ([N, L, D])."""
    n = prompt.shape[-2]
    prompt = prompt.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
    return torch.cat([hidden[:, :1], prompt, hidden[:, 1 + n :]], dim=1)


@BACKBONES.register("openclip-tiny-random")
def _openclip_tiny_random(**_: object) -> Backbone:
    return OpenCLIPBackbone.from_config(TINY_CONFIG, "openclip-tiny-random")
