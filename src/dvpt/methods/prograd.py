"""ProGrad (Zhu et al., ICCV 2023): CoOp updated only along directions that do not
contradict the zero-shot model.

    L_ce = CE(s * <f(x), t_c>, y),   L_kl = T^2 * KL(softmax(z0 / T) || softmax(z / T))

z0 are zero-shot logits of the hand-crafted template (the same frozen backbone, no prompt).
Per parameter, with g = grad L_ce and k = grad L_kl (the "general direction"):

    g <- g - lambda * (g . k^) k^    if cos(g, k) < 0,   k^ = k / |k|

and only g is applied. Context: 16 vectors, the template's words in the last positions and
zeros before them (ProGrad's initialisation). With ``count_words`` the words are counted as
ProGrad's code counts them (``len(words.split(" "))``), not as BPE tokens: a word that makes
two tokens ("pet," is "pet" and ",") then leaves the template's last token(s) fixed after the
context, as in the official prompts. With ``fp32_teacher`` the zero-shot teacher runs in fp32
whatever the run's precision, also on fp16 weights (ProGrad's teacher is CLIP cast to float).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from ..prompts.handcrafted import handcrafted_features, method_template
from ..engine.device import autocast
from ..prompts.learner import PLACEHOLDER, PromptLearner
from .base import Batch, StepContext, cross_entropy_terms, optimizer_step, register_method, scores
from .coop import CoOp, CoOpOptions

log = logging.getLogger(__name__)

#: ``ctx_init`` value selecting ProGrad's initialisation from the template's words
TEMPLATE_INIT = "template"

#: ProGrad moves the class name to the end of CoOp's templates so the words before it can
#: initialise the context; other templates are used as they are
PROGRAD_TEMPLATES: dict[str, str] = {
    "a photo of a {}, a type of pet.": "a type of pet, a photo of a {}.",
    "a photo of a {}, a type of flower.": "a type of flower, a photo of a {}.",
    "a photo of a {}, a type of aircraft.": "a type of aircraft, a photo of a {}.",
    "{} texture.": "a texture of {}.",
    "a photo of {}, a type of food.": "a type of food, a photo of {}.",
}


@dataclass
class ProGradOptions(CoOpOptions):
    n_ctx: PositiveInt = 16
    #: "template": the template's words fill the last context vectors, zeros before them;
    #: other words: CoOp's initialisation; empty: random N(0, 0.02)
    ctx_init: str = TEMPLATE_INIT
    #: lambda, how much of the conflicting component is removed (1 = all of it)
    lam: NonNegativeFloat = 1.0
    #: distillation temperature T
    temperature: PositiveFloat = 1.0
    #: hand-crafted template with "{}"; empty = the dataset's template (ProGrad's variant)
    template: str = ""
    #: with ctx_init "template": count words with split(" ") as the official code does (the
    #: paper specs); false counts BPE tokens, so every template token is learnable
    count_words: bool = False
    #: teacher text and image features in fp32 under an fp16/bf16/fp16-weights run (the official teacher);
    #: costs a second, fp32 image forward per step on the image path
    fp32_teacher: bool = False


def prograd_template(templates: Sequence[str], override: str = "") -> str:
    """The dataset's first template with the class name moved last, as ProGrad's table has it."""
    return method_template(templates, PROGRAD_TEMPLATES, override)


def template_words(template: str) -> str:
    """The words before the class name: "a type of pet, a photo of a {}." -> "a type of pet, a photo of a"."""
    return template.split("{}")[0].strip()


def place_words_last(learner: PromptLearner, words: str) -> None:
    """Zero the context and put the embeddings of ``words`` in its last positions."""
    backbone = learner.backbone
    tokens = backbone.tokenize([words])
    n_words = int(tokens.lengths[0]) - 2
    with torch.no_grad():
        vectors = backbone.embed_tokens(tokens.ids[:, 1 : 1 + n_words])[0].float()
        if n_words > learner.n_ctx:
            log.warning("%r is %d tokens, more than n_ctx=%d: only the last %d initialise the context",
                        words, n_words, learner.n_ctx, learner.n_ctx)
            vectors = vectors[-learner.n_ctx :]
        learner.ctx.zero_()
        if len(vectors):
            learner.ctx[..., -len(vectors) :, :] = vectors.to(learner.ctx.device)


def official_context_text(words: str, n_ctx: int) -> tuple[str, int]:
    """ProGrad's prompt head ``"X" * (n_ctx - n) + words`` and ``n = len(words.split(" "))``.

    The first ``n_ctx`` tokens of the head are the context: ``n_ctx - n`` placeholders and the
    first ``n`` tokens of ``words``; any tokens of ``words`` after those stay fixed.
    """
    from ..errors import ConfigError

    n_words = len(words.split(" ")) if words else 0
    if n_words > n_ctx:
        raise ConfigError(f"ProGrad template words {words!r} are {n_words} words, more than n_ctx={n_ctx}; "
                          f"raise options.n_ctx to at least {n_words}")
    return " ".join([PLACEHOLDER] * (n_ctx - n_words) + ([words] if words else [])), n_words


def place_counted_words(learner: PromptLearner, words: str) -> None:
    """ProGrad's official initialisation: zeros, then the embeddings of the first
    ``len(words.split(" "))`` tokens of ``words`` in the last context positions; the prompt
    text becomes the official head, so the tokens not counted are fixed ones."""
    head, n_words = official_context_text(words, learner.n_ctx)
    learner.set_context_text(head)
    backbone = learner.backbone
    with torch.no_grad():
        ids = backbone.tokenize([words]).ids[:, 1 : 1 + n_words]
        vectors = backbone.embed_tokens(ids)[0].float()
        learner.ctx.zero_()
        if n_words:
            learner.ctx[..., -n_words:, :] = vectors.to(learner.ctx.device)


def project_conflict(grad: Tensor, general: Tensor, lam: float) -> Tensor:
    """``grad`` minus lambda times its component along ``general`` when they conflict."""
    dot = (grad.float() * general.float()).sum()
    coef = torch.where(dot < 0, lam * dot / general.float().pow(2).sum().clamp_min(1e-30), torch.zeros_like(dot))
    return (grad.float() - coef * general.float()).to(grad.dtype)


@register_method
class ProGrad(CoOp):
    name = "prograd"
    Options = ProGradOptions
    summary = "CoOp with gradients projected off the zero-shot direction (Zhu et al., ICCV 2023)"

    def context_init(self) -> str | None:
        """ProGrad's own initialisation starts from zeros (placed in ``build``), not from words."""
        return None if self.options.ctx_init == TEMPLATE_INIT else super().context_init()

    def build(self) -> None:
        super().build()
        options = self.options
        if options.ctx_init == TEMPLATE_INIT:
            if options.count_words:
                place_counted_words(self.prompt_learner, template_words(self.template))
            else:
                place_words_last(self.prompt_learner, template_words(self.template))

    @property
    def template(self) -> str:
        return prograd_template(self.templates, self.options.template)

    def set_classnames(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """Another class list; with counted words the fixed tokens follow the (new) template,
        as the official prompt learner built for a target dataset has them."""
        super().set_classnames(classnames, templates)
        if self.options.ctx_init == TEMPLATE_INIT and self.options.count_words:
            head, _ = official_context_text(template_words(self.template), self.prompt_learner.n_ctx)
            self.prompt_learner.set_context_text(head)

    def zero_shot_logits(self, image_features: Tensor, batch: Batch | None = None) -> Tensor:
        """The teacher: hand-crafted prompts through the same frozen backbone.

        With ``fp32_teacher`` under an fp16/bf16 autocast or on fp16 weights, the template's text
        features and (on the image path) the image's features are computed again in fp32: on
        fp16 weights with those weights in fp32 (``Backbone.fp32_weights``), the values the
        official ``clip_model.float()`` teacher has.
        """
        device = self.backbone.device
        lowered = self.options.fp32_teacher and (torch.is_autocast_enabled(device.type)
                                                 or self.backbone.dtype != torch.float32)
        if not lowered:
            text = handcrafted_features(self.backbone, self.classnames, [self.template])
            return scores(image_features, text, self.logit_scale)
        with self.backbone.fp32_weights(), autocast(device, "fp32"), torch.no_grad():
            text = handcrafted_features(self.backbone, self.classnames, [self.template])
            if batch is not None and batch.images is not None:
                image_features = F.normalize(self.backbone.encode_image(batch.images).float(), dim=-1)
            return scores(image_features.float(), text.float(), self.logit_scale.float())

    def losses(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        feats = self.image_features(batch)
        logits = scores(feats, self.classifier(), self.logit_scale)
        terms = cross_entropy_terms(logits, batch.labels)
        t = self.options.temperature
        teacher = F.softmax(self.zero_shot_logits(feats, batch).float() / t, dim=-1)
        student = F.log_softmax(logits.float() / t, dim=-1)
        terms["kl"] = F.kl_div(student, teacher, reduction="batchmean") * t * t
        return terms

    def backward_and_step(self, losses: dict[str, Tensor], optimizer: torch.optim.Optimizer, scaler=None) -> None:
        """Apply the CE gradient, projected per parameter off its conflict with the KL one.

        With a GradScaler both losses are scaled by the same factor, so the projection (linear
        in the CE gradient, scale-free in the KL one) commutes with unscaling; non-finite
        gradients propagate into the applied ones and the scaler skips that step.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        scale = scaler.scale if scaler is not None else (lambda loss: loss)
        general = torch.autograd.grad(scale(losses["kl"]), params, retain_graph=True, allow_unused=True)
        task = torch.autograd.grad(scale(losses["loss"]), params, allow_unused=True)
        for param, g, k in zip(params, task, general):
            if g is not None:
                param.grad = g if k is None else project_conflict(g, k, self.options.lam)
        optimizer_step(optimizer, scaler)
