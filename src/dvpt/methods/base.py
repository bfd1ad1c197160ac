"""What a method is: the learnable parts, the loss terms and the inference rule.

A method never runs its own training loop and never copies or patches the backbone: it
holds a reference to the frozen backbone and owns only its learnable modules, so
``method.parameters()`` is exactly what the optimiser updates and what a checkpoint holds.
Hooks (``backward_and_step``, ``on_epoch_end``, ``finalize``) are there for the methods
that need them (ProGrad's gradient projection, PromptSRC's prompt averaging). Where training
stands (epoch, step, the run's random stream) comes in a ``StepContext`` the engine builds, so
no method counts epochs or seeds a generator itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.base import Backbone
from ..backbones.text_path import TextOptions
from ..config.fields import Validated
from ..prompts.deep import DeepTextPrompts
from ..prompts.learner import PromptLearner
from ..registry import METHODS


@dataclass
class Batch:
    """A training or evaluation batch: images, or their cached frozen features."""

    labels: Tensor
    images: Tensor | None = None
    features: Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.labels), move(self.images), move(self.features))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def method_generator(seed: int, epoch: int) -> torch.Generator:
    """The methods' random stream of 0-based ``epoch`` of a run seeded ``seed``.

    Its own formula, apart from the batch order's (``engine.features.epoch_generator``), so
    what a method draws never shifts which batches it sees; it is the stream DVPT drew from
    before the context existed, so every published number stays bit-identical.
    """
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


@dataclass(frozen=True)
class StepContext:
    """Where training stands, built by the engine for ``losses`` and the epoch hooks.

    A method reads the epoch from here and draws its randomness from ``generator`` instead of
    counting epochs or seeding its own stream: only the engine knows the run seed and where a
    resumed run starts, so a resumed run draws exactly what an uninterrupted one draws. One
    generator serves every step of an epoch (and its ``on_epoch_end``), consumed in step order.
    """

    #: the run seed (``cfg.seed``)
    seed: int
    #: 0-based index of the epoch being run (in ``on_epoch_end``: the one just finished)
    epoch: int
    #: epochs the run trains in all
    epochs: int
    #: 0-based index of the step within the epoch
    step: int
    #: the methods' random stream of this epoch, ``method_generator(seed, epoch)``
    generator: torch.Generator = field(repr=False, compare=False)

    @classmethod
    def for_epoch(cls, seed: int, epoch: int, epochs: int) -> "StepContext":
        """The context of step 0 of ``epoch``, with a fresh stream for that epoch."""
        return cls(seed, epoch, epochs, 0, method_generator(seed, epoch))

    def at_step(self, step: int) -> "StepContext":
        """The same epoch (and the same, already partly consumed stream) at ``step``."""
        return replace(self, step=step)


@dataclass
class MethodOptions(Validated):
    """Base of every method's options dataclass: its typed fields are checked when the config
    is built, and an error names the key as ``options.<field>``."""

    config_key = "options"


@dataclass
class NoOptions(MethodOptions):
    """A method without options."""


class PromptMethod(nn.Module):
    """Base class of every registered method."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: True when learnable parts change how images are encoded (deep vision prompts):
    #: such methods cannot train on cached frozen image features.
    uses_image_tower: ClassVar[bool] = False
    #: False for a method with nothing to learn (zero-shot): the trainer skips it and the
    #: contract tests expect no parameter at all
    learns: ClassVar[bool] = True
    #: one line for ``dvpt methods``
    summary: ClassVar[str] = ""
    #: state-dict keys an older version saved that this one no longer has: skipped on
    #: load, so older run folders and prompt files still load
    retired_keys: ClassVar[frozenset[str]] = frozenset()
    #: how prompts go through the text tower (speed and memory, never the result)
    text_options: TextOptions = TextOptions()

    def __init__(self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], options: Any) -> None:
        super().__init__()
        self._backbone = [backbone]  # a reference, not a submodule
        self.options = options
        self.templates = list(templates) or ["a photo of a {}."]
        self.classnames = list(classnames)
        self.build()

    def build(self) -> None:
        """Create the learnable parts from ``self.backbone``, ``self.classnames`` and
        ``self.options`` (all set before it runs). A method overrides this instead of
        ``__init__``, so its constructor signature is the engine's and never repeated; the
        order of creation is the order of the random draws."""
        #: registered name of the dataset the classes come from ("" = unknown), set by the
        #: session from the run's config (and per target by the transfer protocols); only an
        #: official recipe that depends on the dataset reads it (zero-shot's ImageNet ensemble)
        self.dataset = ""

    @property
    def backbone(self) -> Backbone:
        return self._backbone[0]

    @property
    def logit_scale(self) -> Tensor:
        return self.backbone.logit_scale

    def set_text_options(self, options: TextOptions) -> "PromptMethod":
        """Use ``options`` in every text-tower call of this method and its prompt modules.

        Set once by whoever builds the method (the session from ``cfg.text``, ``dvpt bench``,
        ``load_prompt``), so training, evaluation, transfer targets and the API all encode
        prompts the same way, with no global state to leak between runs.
        """
        for module in self.modules():
            if isinstance(getattr(module, "text_options", None), TextOptions):
                module.text_options = options
        return self

    # ---- class set ------------------------------------------------------------------
    def set_classnames(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """Switch to another class list (novel classes, a target dataset, new names).

        Every learnable part that depends on the class list (a prompt learner: it tokenises
        "<context> <class name>.") has its own ``set_classnames`` and is told here, so a
        method never forwards the call itself.
        """
        self.classnames = list(classnames)
        if templates:
            self.templates = list(templates)
        for module in self.modules():
            if module is not self and hasattr(module, "set_classnames"):
                module.set_classnames(self.classnames)

    def set_dataset(self, name: str) -> None:
        """Name the dataset the current classes come from (a registered dataset name)."""
        self.dataset = name

    # ---- features ---------------------------------------------------------------------
    def image_features(self, batch: Batch) -> Tensor:
        """Unit-norm frozen image features: cached ones when the batch carries them."""
        if batch.features is not None:
            feats = batch.features
        else:
            with torch.no_grad():
                feats = self.backbone.encode_image(batch.images)
        return F.normalize(feats.float(), dim=-1)

    def classifier(self) -> Tensor | None:
        """The [C, E] matrix image features are scored against (logits = s * f @ W.T): the
        unit-norm class text features, or a weighted sum of them for a method that ensembles
        views. Raises NotImplementedError when it depends on the image (CoCoOp)."""
        raise NotImplementedError

    def classifier_or_none(self) -> Tensor | None:
        """The classifier when it is image-independent (computed once per evaluation)."""
        try:
            return self.classifier()
        except NotImplementedError:
            return None

    def logits(self, batch: Batch, classifier: Tensor | None = None) -> Tensor:
        """[B, C] logits. ``classifier`` lets evaluation encode the class texts once."""
        text = self.classifier() if classifier is None else classifier
        return scores(self.image_features(batch), text, self.logit_scale)

    def losses(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        """Named loss terms of one step; ``loss`` is the total that is minimised."""
        return cross_entropy_terms(self.logits(batch), batch.labels)

    # ---- the official pure-fp16 precision ----------------------------------------------
    def fp16_parts(self) -> list[nn.Module | nn.Parameter]:
        """The learnable parts the official code creates in CLIP's dtype, so in fp16 under its
        default ``PREC: fp16``; whatever it creates with torch's defaults (a new
        ``nn.Parameter(torch.empty(...))``, ``nn.Linear``) is fp32 there and stays fp32 here.

        Default: the input context of every prompt learner, which CoOp's ``PromptLearner``
        (and KgCoOp's, ProGrad's, CoCoOp's, MaPLe's and PromptSRC's) takes from
        ``token_embedding(...).type(dtype)`` or ``torch.empty(..., dtype=dtype)``, with
        ``dtype = clip_model.dtype``. A method with more such parts adds them.
        """
        return [m.ctx for m in self.modules() if isinstance(m, (PromptLearner, DeepTextPrompts))]

    def cast_fp16_parts(self) -> None:
        """``precision: fp16-weights``: ``fp16_parts`` to fp16, the rest left in fp32; the
        optimiser then updates each in its own dtype, as the official SGD does."""
        for part in self.fp16_parts():
            if isinstance(part, nn.Parameter):
                part.data = part.data.half()
            else:
                part.half()

    # ---- hooks ------------------------------------------------------------------------
    def backward_and_step(self, losses: dict[str, Tensor], optimizer: torch.optim.Optimizer, scaler=None) -> None:
        """Default: plain backward of the total loss and one optimiser step."""
        loss = losses["loss"]
        (loss if scaler is None else scaler.scale(loss)).backward()
        optimizer_step(optimizer, scaler)

    def on_epoch_end(self, ctx: StepContext) -> None:
        """Called after each training epoch (``ctx.epoch``: the one just finished), before its checkpoint."""

    def finalize(self, epochs_trained: int) -> None:
        """Called once after the last epoch, before evaluation and the final checkpoint
        (``epochs_trained`` is 0 when there was nothing to train)."""

    def inference_state(self) -> dict[str, Any]:
        """JSON-able settings inference needs besides the tensors (for exported prompts)."""
        return {}

    def load_inference_state(self, state: dict[str, Any]) -> None:
        """Restore what ``inference_state`` returned (loading an exported prompt).

        The default accepts a state this instance already has (settings derived from its
        options) and refuses any other, which it would otherwise silently drop: a method
        whose inference state is learned overrides this too.
        """
        same = json.dumps(state, sort_keys=True) == json.dumps(self.inference_state(), sort_keys=True)
        if state and not same:
            raise NotImplementedError(f"{type(self).__name__} cannot restore inference state {sorted(state)}")


def optimizer_step(optimizer: torch.optim.Optimizer, scaler=None) -> None:
    """Apply the gradients now in ``.grad``: through the GradScaler when there is one (it
    unscales, skips a step with non-finite gradients and updates its scale), else directly.
    Every ``backward_and_step`` ends here, so the mixed-precision handling lives once."""
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def scores(feats: Tensor, classifier: Tensor, logit_scale: Tensor | float) -> Tensor:
    """CLIP's logits ``s * f @ W.T`` of features [B, E] against class rows [C, E] (the one
    place the product is written, so every method scores the same way)."""
    return logit_scale * feats @ classifier.t()


def cross_entropy_terms(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """{"loss": CE, "ce": CE (detached), "acc": batch accuracy in percent}."""
    ce = F.cross_entropy(logits.float(), labels)
    acc = (logits.detach().argmax(-1) == labels).float().mean() * 100
    return {"loss": ce, "ce": ce.detach(), "acc": acc}


def register_method(cls: type[PromptMethod]) -> type[PromptMethod]:
    """Class decorator: ``@register_method`` on a ``PromptMethod`` with a ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name`")
    METHODS.add(cls.name, cls)
    return cls
