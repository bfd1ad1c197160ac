"""The run configuration as validated data.

Layers, each overriding the one before: dataclass defaults < method preset
(``presets/methods/<method>.yaml``) < run files (``--config``) < command-line flags <
``--set key.path=value``. Unknown keys and wrong types are errors that name the key. The
resolved config is written into every run folder and checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OptimConfig:
    """CoOp's recipe as defaults (SGD, cosine, one constant warm-up epoch at 1e-5)."""

    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 10
    batch_size: int = 32
    scheduler: str = "cosine"  # cosine | constant
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5


@dataclass
class DataConfig:
    dataset: str = "emoji-animals"
    root: str | None = None
    shots: int = 16
    #: the fewshot protocol runs one training per entry (e.g. [1, 2, 4, 8, 16])
    shots_list: list = field(default_factory=list)
    #: reader options, e.g. {"domain": "line"} for the emoji benchmark
    options: dict = field(default_factory=dict)


@dataclass
class CacheConfig:
    """Frozen-feature cache for methods that leave the image tower untouched."""

    enabled: bool = True
    #: augmented views per training image computed once (K); 0 = the naive path
    views: int = 8
    #: where features are stored between runs; None = memory only
    dir: str | None = None


@dataclass
class TextConfig:
    """How prompts go through the text tower: speed and memory only, the numbers are equal
    (see ``dvpt.prompts.text_encoding``)."""

    #: compute the prefix every prompt shares ([start] + shared context) once (causal towers)
    share_prefix: bool = True
    #: classes per text pass, recomputed in backward; 0 = all classes in one pass
    chunk: int = 0
    #: gradient checkpointing per text block (for many classes on a small GPU)
    checkpoint: bool = False


@dataclass
class RunConfig:
    method: str = "coop"
    backbone: str = "micro"
    #: base2novel | all | crossdataset | domaingen | fewshot
    protocol: str = "base2novel"
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    eval_batch_size: int = 100
    threads: int | None = None
    #: target datasets for crossdataset/domaingen protocols
    targets: list = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    text: TextConfig = field(default_factory=TextConfig)
    #: options of the chosen method, validated against its own dataclass
    options: dict = field(default_factory=dict)
