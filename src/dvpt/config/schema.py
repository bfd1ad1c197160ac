"""The run configuration as validated data.

Layers, each overriding the one before: dataclass defaults < method preset
(``presets/methods/<method>.yaml``) < run files (``--config``) < command-line flags <
``--set key.path=value``. Unknown keys and wrong types are errors that name the key. The
resolved config is written into every run folder and checkpoint.

Each field's annotation is its contract (``config.fields``): choices are ``Literal``, ranges
``Annotated[..., Ge(..)]``; a bad value fails when the config is built, naming its key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from .fields import Ge, Gt, Matches, Validated

PositiveInt = Annotated[int, Ge(1)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Device = Annotated[str, Matches(r"auto|cpu|cuda|cuda:\d+|mps", "one of auto | cpu | cuda | cuda:N | mps")]


@dataclass
class OptimConfig(Validated):
    """CoOp's recipe as defaults (SGD, cosine, one constant warm-up epoch at 1e-5)."""

    config_key = "optim"

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.002
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 5e-4
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    scheduler: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: NonNegativeInt = 1
    warmup_lr: NonNegativeFloat = 1e-5


@dataclass
class DataConfig(Validated):
    config_key = "data"

    dataset: str = "emoji-animals"
    root: str | None = None
    shots: PositiveInt = 16
    #: the fewshot protocol runs one training per entry (e.g. [1, 2, 4, 8, 16])
    shots_list: list[PositiveInt] = field(default_factory=list)
    #: reader options, e.g. {"domain": "line"} for the emoji benchmark
    options: dict = field(default_factory=dict)


@dataclass
class CacheConfig(Validated):
    """Frozen-feature cache for methods that leave the image tower untouched."""

    config_key = "cache"

    enabled: bool = True
    #: augmented views per training image computed once (K); 0 = the naive path
    views: NonNegativeInt = 8
    #: where features are stored between runs; None = memory only
    dir: str | None = None


@dataclass
class TextConfig(Validated):
    """How prompts go through the text tower: speed and memory only, the numbers are equal
    (see ``dvpt.backbones.text_path``)."""

    config_key = "text"

    #: compute the prefix every prompt shares ([start] + shared context) once (causal towers)
    share_prefix: bool = True
    #: classes per text pass, recomputed in backward; 0 = all classes in one pass
    chunk: NonNegativeInt = 0
    #: gradient checkpointing per text block (for many classes on a small GPU)
    checkpoint: bool = False


@dataclass
class RunConfig(Validated):
    #: a registered method (``dvpt methods``); checked with its options by ``build_config``
    method: str = "coop"
    backbone: str = "micro"
    #: a local weights file (.safetensors, or a folder holding one) for an openclip:<model> backbone
    backbone_checkpoint: str | None = None
    #: a registered protocol: base2novel | all | crossdataset | domaingen | transfer | fewshot
    protocol: str = "base2novel"
    seed: NonNegativeInt = 1
    device: Device = "auto"
    #: auto | fp32 | bf16 | fp16 (autocast over fp32 weights) | fp16-weights (the official
    #: code's pure fp16: half weights, no autocast, no loss scaling; docs/experiments.md)
    precision: Literal["auto", "fp32", "bf16", "fp16", "fp16-weights"] = "auto"
    eval_batch_size: PositiveInt = 100
    threads: PositiveInt | None = None
    #: target datasets for the crossdataset, domaingen and transfer protocols
    targets: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    text: TextConfig = field(default_factory=TextConfig)
    #: options of the chosen method, validated against its own dataclass
    options: dict = field(default_factory=dict)
