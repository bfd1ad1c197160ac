"""open_clip models behind the backbone interface (``openclip-tiny-random``).

open_clip's text tower has no embeddings-in entry point either, so this adapter runs the
library's own pieces (position embeddings, residual blocks with the causal mask, final norm,
pooling at the end-of-text token, projection); deep prompts are arguments of that loop, as in
``hf_clip``. For the exact fast path (shared prefix, chunks, checkpointing; ``text_path``) it
describes open_clip's ``ResidualAttentionBlock`` in neutral terms: this module is the only one
that knows open_clip's attribute names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BackboneError
from ..registry import BACKBONES
from . import transforms
from .base import Backbone, Tokens, weight_fingerprint
from .library_clip import LibraryCLIP
from .text_path import CausalTower, PreNormBlock, replace_prefix

#: A CLIP small enough for CPU tests, in open_clip's own model-config format.
TINY_CONFIG: dict = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


class OpenCLIPBackbone(LibraryCLIP):
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
        _check_driveable(model, name)
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

    @classmethod
    def from_checkpoint(cls, config: dict, name: str, checkpoint: str) -> "OpenCLIPBackbone":
        """open_clip's ``CLIP`` from ``config`` with every weight from a local safetensors file.

        Strict: a file made for another model (missing, unexpected or differently shaped
        tensors) is refused with one message, never loaded half-way.
        """
        from open_clip.model import CLIP
        from open_clip.tokenizer import SimpleTokenizer

        path = checkpoint_file(checkpoint)
        state = _read_state(path)
        model = CLIP(**config)
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            example = (wrong or missing or unexpected)[0]
            raise BackboneError(
                f"backbone_checkpoint {str(path)!r} does not match open_clip model {name!r}: {len(missing)} tensors "
                f"missing, {len(unexpected)} unexpected, {len(wrong)} of another shape (e.g. {example!r}); give the "
                "checkpoint of this model, or the --backbone openclip:<model> it was trained as")
        model.load_state_dict(state, strict=True)
        return cls(model.eval(), SimpleTokenizer(context_length=config["text_cfg"]["context_length"]), name, config)

    def identity_fields(self) -> dict:
        return {
            "name": self.name,
            "library": "open_clip",
            "config": self.config,
            "weights": weight_fingerprint(self.model),
        }

    # ---- text ---------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tokens:
        ids = self.tokenizer(list(texts)).long()
        # real tokens end at the end-of-text token, where open_clip pools (its argmax: the
        # largest id); not ``ids != 0``, since id 0 is also the token of "!"
        end = ids.argmax(dim=1, keepdim=True)
        mask = (torch.arange(ids.shape[1])[None] <= end).long()
        return Tokens(ids, mask).truncated()

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.model.token_embedding(ids.to(self.device))

    def encode_text_plain(self, embeddings: Tensor, tokens: Tokens, deep_prompts=None) -> Tensor:
        model = self.model
        tokens = tokens.to(embeddings.device)
        length = embeddings.shape[1]
        hidden = embeddings + model.positional_embedding[:length].to(embeddings.dtype)
        mask = model.attn_mask[:length, :length].to(hidden.device, hidden.dtype)
        for index, block in enumerate(model.transformer.resblocks):
            if deep_prompts and 0 < index <= len(deep_prompts):
                hidden = replace_prefix(hidden, deep_prompts[index - 1])
            hidden = block(hidden, attn_mask=mask)
        hidden = model.ln_final(hidden)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), tokens.eot_index]
        return self._project(pooled)

    def _project(self, pooled: Tensor) -> Tensor:
        projection = self.model.text_projection
        if projection is None:
            return pooled
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection

    def causal_tower(self) -> CausalTower:
        """open_clip's text ``ResidualAttentionBlock``s in the fast path's neutral terms."""
        model = self.model
        return CausalTower(
            positions=model.positional_embedding,
            blocks=[_neutral_block(block) for block in model.transformer.resblocks],
            final_norm=model.ln_final,
            project=self._project,
        )

    def library_encode_text(self, texts: Sequence[str]) -> Tensor:
        return self.model.encode_text(self.tokenizer(list(texts)).to(self.device))

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



def _neutral_block(block) -> PreNormBlock:
    """q, k and v are slices of ``nn.MultiheadAttention``'s packed input projection; the layer
    scales (identity unless the config sets ``ls_init_value``) belong to the residual updates."""
    attn = block.attn
    width = attn.embed_dim
    weight, bias = attn.in_proj_weight, attn.in_proj_bias

    def part(index: int):
        rows = slice(index * width, (index + 1) * width)
        return lambda x: F.linear(x, weight[rows], None if bias is None else bias[rows])

    return PreNormBlock(norm_attn=block.ln_1, q=part(0), k=part(1), v=part(2), heads=attn.num_heads,
                        attn_out=lambda x: block.ls_1(attn.out_proj(x)), norm_mlp=block.ln_2,
                        mlp=lambda x: block.ls_2(block.mlp(x)))


def _check_driveable(model, name: str) -> None:
    """Refuse towers this adapter's loop would encode differently from open_clip's own."""
    blocks = getattr(getattr(model, "transformer", None), "resblocks", None)
    problem = None
    if blocks is None or getattr(model, "attn_mask", None) is None:
        problem = "its text tower is not a causal transformer"
    elif getattr(model, "text_pool_type", "argmax") != "argmax":
        problem = f"it pools text at {model.text_pool_type!r}, not at the end-of-text token"
    elif not all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) and not hasattr(b, "ln_1_kv")
                 for b in blocks):
        problem = "its text blocks are not open_clip's standard residual attention blocks"
    if problem:
        raise BackboneError(f"open_clip model {name!r} cannot be used: {problem}; "
                            "use a CLIP-style model such as openclip:ViT-B-32 or openclip:ViT-B-16")


CHECKPOINT_NAMES = ("open_clip_model.safetensors", "model.safetensors")


def checkpoint_file(checkpoint: str) -> Path:
    """The safetensors file a ``backbone_checkpoint`` names: the file itself, or in a folder
    open_clip's hub file name, or the folder's only ``.safetensors`` file."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        named = [path / n for n in CHECKPOINT_NAMES if (path / n).is_file()]
        found = named or sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise BackboneError(
                f"backbone_checkpoint folder {checkpoint!r} holds {len(found)} .safetensors files and none named "
                f"{CHECKPOINT_NAMES[0]}; point backbone_checkpoint at the file itself")
        path = found[0]
    if not path.is_file():
        raise BackboneError(f"backbone_checkpoint {checkpoint!r} does not exist; give a .safetensors file or a folder "
                            "holding one (e.g. open_clip_model.safetensors from the model's hub page)")
    if path.suffix != ".safetensors":
        raise BackboneError(
            f"backbone_checkpoint {str(path)!r} is not a .safetensors file; dvpt does not read pickled checkpoints "
            "(.bin/.pt/.pth). Use the model's open_clip_model.safetensors, or convert the file once where you trust it")
    return path


def _read_state(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BackboneError(f"cannot read backbone_checkpoint {str(path)!r}: {str(exc).splitlines()[0]}; "
                            "download or convert it again") from None
    return {k.removeprefix("module."): v for k, v in state.items()}


@BACKBONES.register("openclip-tiny-random")
def _openclip_tiny_random(**_: object) -> Backbone:
    return OpenCLIPBackbone.from_config(TINY_CONFIG, "openclip-tiny-random")


PREFIX = "openclip:"


def load_open_clip(spec: str, checkpoint: str | None = None) -> Backbone:
    """``openclip:<model>[/<pretrained tag>]``: open_clip's model config, weights by tag or
    from a local ``checkpoint`` (a ``.safetensors`` file, or a folder holding one).

    Without a tag or checkpoint the weights are random (seeded) and a warning says so; a tag
    downloads on a connected machine like a transformers hub id. Only CLIP-style towers (a
    causal text transformer and a patch ViT) are accepted: the adapter runs their blocks itself.
    """
    import open_clip

    body = spec[len(PREFIX):]
    model_name, _, tag = body.partition("/")
    known = open_clip.list_models()
    if model_name not in known:
        close = [m for m in known if m.lower().startswith(model_name.lower()[:5])][:5]
        raise BackboneError(
            f"unknown open_clip model {model_name!r} in --backbone {spec!r}; use one of open_clip.list_models()"
            + (f", e.g. {', '.join(close)}" if close else " (e.g. openclip:ViT-B-32)")
        )
    config = open_clip.get_model_config(model_name)
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    if "hf_model_name" in text or "timm_model_name" in vision or config.get("custom_text"):
        raise BackboneError(
            f"open_clip model {model_name!r} uses a timm or Hugging Face tower, which dvpt does not drive yet; "
            "use a CLIP-style model such as openclip:ViT-B-32 or openclip:ViT-B-16"
        )
    if checkpoint:
        if tag:
            raise BackboneError(
                f"--backbone {spec!r} names pretrained tag {tag!r} and backbone_checkpoint={checkpoint!r} is set: "
                f"use one of them (openclip:{model_name} with the checkpoint, or the tag alone)")
        return OpenCLIPBackbone.from_checkpoint(config, spec, checkpoint)
    if not tag:
        import warnings

        warnings.warn(
            f"--backbone {spec!r} has no pretrained tag: random weights (seed 0). Add /<tag> "
            f"(one of {open_clip.list_pretrained_tags_by_model(model_name)[:4]}) for trained weights.",
            stacklevel=2,
        )
        return OpenCLIPBackbone.from_config(config, spec)
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tag not in tags:
        raise BackboneError(
            f"unknown pretrained tag {tag!r} for open_clip model {model_name!r}; use one of: {', '.join(tags) or 'none'}"
        )
    try:
        model = open_clip.create_model(model_name, pretrained=tag)
    except Exception as exc:  # noqa: BLE001 - download and load errors, shown as one line
        raise BackboneError(
            f"cannot load open_clip weights {spec!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
            "Without internet, download them once on a connected machine (open_clip caches them) and retry"
        ) from None
    return OpenCLIPBackbone(model.eval(), open_clip.get_tokenizer(model_name), spec, config)
