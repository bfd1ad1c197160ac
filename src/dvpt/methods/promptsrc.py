"""PromptSRC (Khattak et al., ICCV 2023): independent deep V-L prompts, self-regularised.

    t_c = g(P^t; c),  f = f(x; P^v),  t~_c = mean_k g(template_k(c)),  f~ = f(x)   (frozen)
    L = CE(s<f, t_c>, y) + l_t |t_c - t~_c|_1 + l_i |f - f~|_1 + KL(p~ || p) / numel
    with unit features, p = softmax(s<f, t>), p~ = softmax(s<f~, t~>), T = 1

t~ averages the frozen text features over the 60 ImageNet templates (textual diversity);
the frozen features come from the same backbone called without prompts. The KL term is the
reference code's ``kl_div(log p, log p~, reduction="sum", log_target=True) / logits.numel()``.

Gaussian-weighted prompt aggregation (GPA): after epoch e of E the prompts are added to a
running sum with weight w_e = N(e; mu, sigma) / sum_e' N(e'; mu, sigma); ``finalize`` loads
the sum. The sum is a persistent buffer: checkpoints carry it, so a resumed run aggregates
exactly as an uninterrupted one. The epoch comes from the engine's ``StepContext``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.base import Backbone
from ..config.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from ..data.templates import IMAGENET_TEMPLATES
from ..errors import ConfigError
from ..prompts.deep import DeepTextPrompts, VisionPrompts
from ..prompts.handcrafted import fill
from .base import Batch, MethodOptions, PromptMethod, StepContext, cross_entropy_terms, register_method, scores


@dataclass
class PromptSRCOptions(MethodOptions):
    n_ctx_text: PositiveInt = 4
    n_ctx_vision: PositiveInt = 4
    ctx_init: str = "a photo of a"
    depth_text: PositiveInt = 9
    depth_vision: PositiveInt = 9
    text_loss_weight: NonNegativeFloat = 25.0
    image_loss_weight: NonNegativeFloat = 10.0
    logits_loss_weight: NonNegativeFloat = 1.0
    #: frozen text target: imagenet (the 60 IMAGENET_TEMPLATES) | dataset (the dataset's templates)
    teacher_templates: Literal["imagenet", "dataset"] = "imagenet"
    gpa: bool = True
    gpa_mean: float = 15.0
    gpa_std: PositiveFloat = 1.0


def gpa_weights(epochs: int, mean: float, std: float) -> Tensor:
    """w_e for e = 1..epochs: Gaussian density at e, normalised to sum 1 (float64).

    Computed as a softmax of the log-densities: the normalising constant cancels and far
    epochs cannot underflow to an all-zero vector.
    """
    if std <= 0:
        raise ConfigError(f"options.gpa_std must be > 0, got {std}")
    e = torch.arange(1, epochs + 1, dtype=torch.float64)
    return torch.softmax(-0.5 * ((e - mean) / std) ** 2, dim=0)


@torch.no_grad()
def mean_text_features(backbone: Backbone, classnames: Sequence[str], templates: Sequence[str]) -> Tensor:
    """[C, E] unit norm of the mean over templates of the raw frozen text features
    (the reference averages un-normalised features, then normalises)."""
    total = None
    for template in templates:
        feats = backbone.encode_text([fill(template, c) for c in classnames]).float()
        total = feats if total is None else total + feats
    return F.normalize(total / len(templates), dim=-1)


class PromptAverage(nn.Module):
    """Running weighted sum of a module's parameters, kept as persistent buffers."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = dict(module.named_parameters())
        for name in self.names:
            self.register_buffer(self.key(name), torch.zeros_like(params[name]))

    @staticmethod
    def key(name: str) -> str:
        return "sum__" + name.replace(".", "__")

    @torch.no_grad()
    def add(self, module: nn.Module, weight: float) -> None:
        params = dict(module.named_parameters())
        for name in self.names:
            getattr(self, self.key(name)).add_(params[name].detach(), alpha=weight)

    @torch.no_grad()
    def load_into(self, module: nn.Module) -> None:
        params = dict(module.named_parameters())
        for name in self.names:
            params[name].copy_(getattr(self, self.key(name)))


@register_method
class PromptSRC(PromptMethod):
    name = "promptsrc"
    Options = PromptSRCOptions
    uses_image_tower = True
    summary = "independent deep V-L prompts with self-regularisation and GPA (Khattak et al., ICCV 2023)"
    #: the epoch count GPA kept before the engine passed the epoch in (older checkpoints)
    retired_keys = frozenset({"gpa.epochs_done"})

    def build(self) -> None:
        backbone, options = self.backbone, self.options
        self.prompts = nn.ModuleDict({
            "text": DeepTextPrompts(backbone, self.classnames, options.n_ctx_text, options.ctx_init or None,
                                    options.depth_text),
            "vision": VisionPrompts(backbone, options.n_ctx_vision, options.depth_vision),
        })
        self.gpa = PromptAverage(self.prompts)
        self._teacher: dict[tuple, Tensor] = {}

    # ---- features ---------------------------------------------------------------------
    def classifier(self) -> Tensor:
        return F.normalize(self.prompts["text"]().float(), dim=-1)

    def image_features(self, batch: Batch) -> Tensor:
        return F.normalize(self.backbone.encode_image(batch.images, self.prompts["vision"]()).float(), dim=-1)

    def teacher_text(self) -> Tensor:
        """Frozen multi-template text features of the current classes (computed once)."""
        templates = IMAGENET_TEMPLATES if self.options.teacher_templates == "imagenet" else self.templates
        key = (tuple(self.classnames), tuple(templates), str(self.backbone.device))
        if key not in self._teacher:
            # in fp32 on fp16 weights: PromptSRC's VLPromptLearner encodes them with
            # ``load_clip_to_cpu(cfg, True).float()``, whatever the run's PREC
            with self.backbone.fp32_weights():
                self._teacher[key] = mean_text_features(self.backbone, self.classnames, templates)
        return self._teacher[key]

    # ---- loss -------------------------------------------------------------------------
    def losses(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        o = self.options
        text, image = self.classifier(), self.image_features(batch)
        logits = scores(image, text, self.logit_scale)
        with torch.no_grad():
            zs_text = self.teacher_text()
            zs_image = F.normalize(self.backbone.encode_image(batch.images).float(), dim=-1)
            zs_logits = scores(zs_image, zs_text, self.logit_scale)
        terms = cross_entropy_terms(logits, batch.labels)
        scl_text = F.l1_loss(text, zs_text) * o.text_loss_weight
        scl_image = F.l1_loss(image, zs_image) * o.image_loss_weight
        scl_logits = F.kl_div(F.log_softmax(logits.float(), dim=1), F.log_softmax(zs_logits.float(), dim=1),
                              reduction="sum", log_target=True) / logits.numel() * o.logits_loss_weight
        terms["loss"] = terms["loss"] + scl_text + scl_image + scl_logits
        terms.update(scl_text=scl_text.detach(), scl_image=scl_image.detach(), scl_logits=scl_logits.detach())
        return terms

    # ---- Gaussian prompt aggregation ----------------------------------------------------
    def on_epoch_end(self, ctx: StepContext) -> None:
        if self.options.gpa:
            weight = float(gpa_weights(ctx.epochs, self.options.gpa_mean, self.options.gpa_std)[ctx.epoch])
            self.gpa.add(self.prompts, weight)

    def finalize(self, epochs_trained: int) -> None:
        if self.options.gpa and epochs_trained > 0:
            self.gpa.load_into(self.prompts)
