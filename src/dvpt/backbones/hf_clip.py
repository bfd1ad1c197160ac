"""transformers ``CLIPModel`` behind the backbone interface.

transformers' CLIP text model has no embeddings-in entry point, so this adapter assembles the
pieces itself (position embeddings, the library's own encoder blocks, final norm, pooling at
the end-of-text token, projection). Deep prompts are arguments of that loop. For the exact
fast path (shared prefix, chunks, checkpointing; ``text_path``) it describes the library's
blocks in neutral terms: this module is the only one that knows their attribute names.
Parity with the library's ``get_text_features``/``get_image_features`` is pinned by tests.

Two ways in:
  * any hub id or local folder of a ``CLIPModel`` (``openai/clip-vit-base-patch16``);
  * ``tiny-random``: a small ``CLIPConfig`` built in code with seeded random weights and a
    byte-level CLIP tokenizer (no merges), for tests and quick checks: same code path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..errors import BackboneError
from ..registry import BACKBONES
from . import transforms
from .base import Backbone, Tokens, weight_fingerprint
from .library_clip import LibraryCLIP
from .text_path import CausalTower, PreNormBlock, replace_prefix


def _byte_vocab() -> tuple[dict[str, int], list[str]]:
    """CLIP's byte-to-unicode alphabet as a vocabulary with no merges.

    The first 512 entries of OpenAI's CLIP vocabulary are exactly these (each byte, then each
    byte with the end-of-word marker), so a tokenizer built from them is a real CLIP BPE
    tokenizer that simply never merges: every character is a token.
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + 256 for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return vocab, []


def tiny_clip_config(
    *,
    text_width: int = 64,
    vision_width: int = 64,
    layers: int = 2,
    heads: int = 4,
    image_size: int = 32,
    patch_size: int = 8,
    embed_dim: int = 32,
) -> "CLIPConfig":  # noqa: F821
    """A CLIP architecture small enough for unit tests on a CPU (a few hundred kB)."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(
            vocab_size=514,
            hidden_size=text_width,
            intermediate_size=4 * text_width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        ),
        vision_config=dict(
            hidden_size=vision_width,
            intermediate_size=4 * vision_width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=embed_dim,
    )


def vit_b16_config() -> "CLIPConfig":  # noqa: F821
    """The ViT-B/16 CLIP architecture (OpenAI's shapes), for random-weight benchmarks."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=16),
        projection_dim=512,
    )


class HFCLIPBackbone(LibraryCLIP):
    """A frozen transformers ``CLIPModel`` plus its tokenizer and preprocessing."""

    causal_text = True
    supports_half_weights = True

    def __init__(self, model, tokenizer, name: str, mean=transforms.CLIP_MEAN, std=transforms.CLIP_STD) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.mean, self.std = tuple(mean), tuple(std)
        tc, vc = model.config.text_config, model.config.vision_config
        self.embed_dim = int(model.config.projection_dim)
        self.text_width = int(tc.hidden_size)
        self.vision_width = int(vc.hidden_size)
        self.text_layers = int(tc.num_hidden_layers)
        self.vision_layers = int(vc.num_hidden_layers)
        self.max_text_length = int(tc.max_position_embeddings)
        self.image_size = int(vc.image_size)
        self.freeze()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, config, tokenizer, name: str, seed: int = 0) -> "HFCLIPBackbone":
        from transformers import CLIPModel

        config._attn_implementation = "sdpa"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPModel(config)
        return cls(model.eval(), tokenizer, name)

    @classmethod
    def tiny_random(cls, seed: int = 0, **shape) -> "HFCLIPBackbone":
        from transformers import CLIPTokenizer

        vocab, merges = _byte_vocab()
        tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
        return cls.from_config(tiny_clip_config(**shape), tokenizer, "tiny-random", seed)

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> "HFCLIPBackbone":
        from transformers import AutoTokenizer, CLIPModel

        try:
            model = CLIPModel.from_pretrained(name_or_path, attn_implementation="sdpa")
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            where = "folder" if Path(name_or_path).exists() else "hub id"
            raise BackboneError(
                f"cannot load CLIP backbone {name_or_path!r} ({where}): {str(exc).splitlines()[0]} "
                "Without internet, download it once elsewhere (e.g. `huggingface-cli download "
                f"{name_or_path} --local-dir DIR`) and pass --backbone DIR (a folder with config.json, "
                "model.safetensors and the tokenizer files)."
            ) from None
        mean, std = transforms.CLIP_MEAN, transforms.CLIP_STD
        try:
            from transformers import CLIPImageProcessor

            proc = CLIPImageProcessor.from_pretrained(name_or_path)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
        except Exception:  # noqa: BLE001 - older folders lack a preprocessor file; CLIP's values apply
            pass
        return cls(model.eval(), tokenizer, str(name_or_path), mean, std)

    def identity_fields(self) -> dict:
        return {
            "name": self.name,
            "config": self.model.config.to_json_string(use_diff=True),
            "weights": weight_fingerprint(self.model),
        }

    # ---- text ---------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tokens:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        return Tokens(enc["input_ids"], enc["attention_mask"])

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.model.text_model.embeddings.token_embedding(ids.to(self.device))

    def _text_mask(self, attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
        """Causal + padding mask as an additive [N, 1, L, L] float tensor."""
        n, length = attention_mask.shape
        allowed = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
        allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()
        mask = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)

    def encode_text_plain(self, embeddings: Tensor, tokens: Tokens, deep_prompts=None) -> Tensor:
        text = self.model.text_model
        tokens = tokens.to(embeddings.device)
        length = embeddings.shape[1]
        # CLIP's TextEncoder: ``prompts + positional_embedding.type(dtype)`` (fp16 under fp16-weights)
        dtype = self.dtype
        hidden = embeddings.to(dtype) + text.embeddings.position_embedding.weight[:length].to(dtype)
        mask = self._text_mask(tokens.attention_mask, hidden.dtype)
        for index, layer in enumerate(text.encoder.layers):
            if deep_prompts and 0 < index <= len(deep_prompts):
                hidden = replace_prefix(hidden, deep_prompts[index - 1])
            hidden = layer(hidden, mask)
        hidden = text.final_layer_norm(hidden)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), tokens.eot_index]
        return self.model.text_projection(pooled)

    def causal_tower(self) -> CausalTower:
        """transformers' ``CLIPEncoderLayer`` blocks in the fast path's neutral terms."""
        text = self.model.text_model
        return CausalTower(
            positions=text.embeddings.position_embedding.weight,
            blocks=[_neutral_block(layer) for layer in text.encoder.layers],
            final_norm=text.final_layer_norm,
            project=self.model.text_projection,
        )

    def library_encode_text(self, texts: Sequence[str]) -> Tensor:
        enc = self.tokenizer(list(texts), padding="max_length", max_length=self.max_text_length, truncation=True,
                             return_tensors="pt").to(self.device)
        out = self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return getattr(out, "pooler_output", out)

    # ---- images -------------------------------------------------------------------------
    def encode_image(self, images: Tensor, deep_prompts=None) -> Tensor:
        vision = self.model.vision_model
        # the class and position embeddings are fp32 (as in CLIP), the patches in the weights' dtype
        hidden = vision.embeddings(images.to(self.device, vision.embeddings.patch_embedding.weight.dtype)).to(self.dtype)
        n_patch = hidden.shape[1]
        if deep_prompts:
            first = deep_prompts[0]
            hidden = torch.cat([hidden, first.to(hidden.dtype).expand(hidden.shape[0], -1, -1)], dim=1)
        hidden = vision.pre_layrnorm(hidden)
        for index, layer in enumerate(vision.encoder.layers):
            if deep_prompts and 0 < index < len(deep_prompts):
                prompt = deep_prompts[index].to(hidden.dtype).expand(hidden.shape[0], -1, -1)
                hidden = torch.cat([hidden[:, :n_patch], prompt], dim=1)
            hidden = layer(hidden, None)
        pooled = vision.post_layernorm(hidden[:, 0])
        return self.model.visual_projection(pooled)



def _neutral_block(layer) -> PreNormBlock:
    attn = layer.self_attn
    return PreNormBlock(norm_attn=layer.layer_norm1, q=attn.q_proj, k=attn.k_proj, v=attn.v_proj,
                        heads=attn.num_heads, attn_out=attn.out_proj, norm_mlp=layer.layer_norm2, mlp=layer.mlp)


@BACKBONES.register("tiny-random")
def _tiny_random(**_: object) -> Backbone:
    return HFCLIPBackbone.tiny_random()


@BACKBONES.register("vit-b16-random")
def _vit_b16_random(**_: object) -> Backbone:
    """ViT-B/16-shaped CLIP with random weights (benchmarks); uses the byte-level tokenizer."""
    from transformers import CLIPTokenizer

    vocab, merges = _byte_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    config = vit_b16_config()
    # the byte tokenizer's start/end ids (512/513), not OpenAI's: the library pools the text
    # at the config's end id, so with OpenAI's ids it would pool position 0 of every prompt
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.eos_token_id = config.text_config.pad_token_id = tokenizer.eos_token_id
    return HFCLIPBackbone.from_config(config, tokenizer, "vit-b16-random")


def load_hf_clip(name_or_path: str) -> Backbone:
    if os.environ.get("HF_HUB_OFFLINE") is None and not Path(name_or_path).exists():
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return HFCLIPBackbone.from_pretrained(name_or_path)
