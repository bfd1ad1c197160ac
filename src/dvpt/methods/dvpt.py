"""DVPT: dual-view mutual-information prompt tuning with class-wise visual augmentation.

Two text views of class c: the soft prompt (CoOp's context, optionally shifted by a class
embedding) and the hand-crafted prompt (frozen, cached),

    t^s_c = norm g([v_1 + h(e_c), ..., v_M + h(e_c), w(c)]),   t^h_c = norm mean_k g(T_k(c))

trained with

    L = CE(s <f(x), t^s>, y) + lambda_mi * L_mi + lambda_aug * L_aug

    L_mi  = infonce:  1/2 [CE(T^s T^h' / tau, I) + CE(T^h T^s' / tau, I)]   (mi.infonce_loss)
            iic:      -MI(softmax(s f T^s'), softmax(s f T^h'))              (mi.iic_mutual_information)
    L_aug = proto:    |h(p_c) - h(t^h_c)|^2                                  (ProtoShift.alignment)
                      (h optionally norm-bounded: |h| < r mean_m |v_m|,      visual_aug.bound_shift)
            mixup:    CE(same-class mixes) + CE(virtual classes)             (visual_aug)
            feature:  CE(s <norm(p_c + z), t^s>, c), z ~ N(0, Sigma_shrunk)  (visual_aug.FeatureBank)
                      (training only: the test-time classifier never sees an image)
            protoview: InfoNCE(T^s_seen, P_seen) -- the visual prototypes as a third view
                      (training only)                                        (mi.infonce_loss)

and inference ``soft``: s <f, t^s>, or ``ensemble``: s <f, (1 - w) t^s + w t^h>.
docs/method.md maps every equation to the code and says why each default was chosen.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config.fields import Interval
from ..config.schema import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from ..prompts.handcrafted import handcrafted_features
from ..prompts.visual_aug import FeatureBank, ProtoShift, same_class_mixup, virtual_classes
from .base import Batch, StepContext, cross_entropy_terms, register_method, scores
from .coop import CoOp, CoOpOptions
from ..losses.mi import iic_mutual_information, infonce_loss, infonce_mi_bound
from .zeroshot import TemplateChoice, select_templates

Probability = Annotated[float, Interval(ge=0.0, le=1.0)]
VisualAug = Literal["proto", "mixup", "feature", "protoview", "none"]


@dataclass
class DVPTOptions(CoOpOptions):
    # soft view: CoOp's options (n_ctx, ctx_init, class_specific)
    # hand-crafted view
    handcrafted: TemplateChoice = "dataset"
    # mutual information between the views
    mi: Literal["infonce", "iic", "none"] = "infonce"
    lambda_mi: NonNegativeFloat = 0.25
    mi_temperature: PositiveFloat = 0.07
    # class-wise visual augmentation
    #: feature: chosen on the tuning data (docs/method.md, Defaults)
    visual_aug: VisualAug = "feature"
    lambda_aug: NonNegativeFloat = 1.0
    proto_hidden: PositiveInt = 32
    #: chance that a trained class is conditioned on its text proxy instead of its prototype
    proxy_prob: Probability = 0.5
    #: trained classes at test time: their visual prototype (bank) or their text proxy
    proto_eval: Literal["bank", "proxy"] = "bank"
    #: bound on the shift: |h(e)| < proto_max_ratio * mean_m |v_m| (tanh-squashed); 0 = unbounded
    proto_max_ratio: NonNegativeFloat = 0.0
    mixup_alpha: PositiveFloat = 1.0
    #: feature: virtual features drawn per seen class per step, and the covariance shrinkage
    feature_draws: NonNegativeInt = 4
    feature_shrink: Probability = 0.5
    # inference
    infer: Literal["soft", "ensemble"] = "ensemble"
    ensemble_weight: Probability = 0.75


@register_method
class DVPT(CoOp):
    name = "dvpt"
    Options = DVPTOptions
    summary = ("dual-view MI prompt tuning with class-wise visual augmentation (this package's method; "
               f"visual_aug: {' | '.join(typing.get_args(VisualAug))})")
    #: the epoch counter kept before the engine passed the epoch in (older checkpoints)
    retired_keys = frozenset({"epochs_done"})

    def build(self) -> None:
        super().build()  # CoOp's prompt learner
        backbone, classnames, options = self.backbone, self.classnames, self.options
        self.proto = None
        if options.visual_aug == "proto":  # built after the learner: CoOp's random draws come first
            self.proto = ProtoShift(backbone.embed_dim, backbone.text_width, classnames, options.proto_hidden)
        self.feature_bank = None
        if options.visual_aug in ("feature", "protoview"):
            self.feature_bank = FeatureBank(backbone.embed_dim, len(classnames))

    # ---- the two views -----------------------------------------------------------------
    def hand_features(self) -> Tensor:
        """t^h [C, E]: the hand-crafted view, computed once per class list (cached)."""
        templates = select_templates(self.templates, self.options.handcrafted)
        return handcrafted_features(self.backbone, self.classnames, templates).to(self.prompt_learner.ctx.device)

    def soft_features(self, shift: Tensor | None = None) -> Tensor:
        """t^s [C, E]: the soft view, context shifted per class by ``shift`` [C, D]."""
        if shift is None:  # CoOp's own call: the learner may share the context prefix across classes
            return super().classifier()
        ctx = self.prompt_learner.context(shift.to(self.prompt_learner.ctx.dtype))
        return F.normalize(self.prompt_learner(ctx).float(), dim=-1)

    def shift_limit(self) -> Tensor | None:
        """rho = r * mean_m |v_m| (a constant of the step: the bound does not pull on v), or None."""
        ratio = self.options.proto_max_ratio
        if ratio <= 0:
            return None
        return ratio * self.prompt_learner.ctx.detach().float().norm(dim=-1).mean()

    def classifier(self) -> Tensor:
        """The inference classifier; ``ensemble`` mixes classifiers = mixes logits (linear)."""
        hand = self.hand_features()
        shift = None
        if self.proto is not None:
            use_bank = self.options.proto_eval == "bank"
            shift = self.proto(self.proto.eval_embeddings(self.classnames, hand, use_bank), self.shift_limit())
        soft = self.soft_features(shift)
        if self.options.infer == "ensemble":
            w = self.options.ensemble_weight
            return (1 - w) * soft + w * hand
        return soft

    # ---- training ---------------------------------------------------------------------
    def losses(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        """L = CE + lambda_mi * L_mi + lambda_aug * L_aug; a term that is switched off is 0."""
        opts = self.options
        feats, hand = self.image_features(batch), self.hand_features()
        shift, l_align = self.prototype_shift(feats, batch.labels, hand, ctx.generator)
        soft = self.soft_features(shift)
        logits = scores(feats, soft, self.logit_scale)
        terms = cross_entropy_terms(logits, batch.labels)
        l_mi = self.mi_loss(feats, soft, hand, logits)
        l_aug = l_align if l_align is not None else self.aug_loss(feats, batch.labels, soft, ctx.generator)
        terms["loss"] = terms["loss"] + opts.lambda_mi * l_mi + opts.lambda_aug * l_aug
        # logged: the terms the options switch on
        if opts.mi != "none":
            terms["mi"] = l_mi.detach()
        if opts.mi == "infonce":
            terms["mi_bound"] = infonce_mi_bound(terms["mi"], len(self.classnames))
        if opts.visual_aug != "none":
            terms["aug"] = l_aug.detach()
        return terms

    def prototype_shift(self, feats: Tensor, labels: Tensor, hand: Tensor,
                        generator: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
        """``proto``: (h(e) [C, D], L_aug = the alignment |h(p_c) - h(t^h_c)|^2); else (None, None).

        The batch enters the prototype bank first; then each trained class is conditioned on its
        prototype or, with ``proxy_prob``, on its text proxy."""
        if self.proto is None:
            return None, None
        self.proto.observe(feats, labels)
        emb, seen = self.proto.train_embeddings(hand, self.options.proxy_prob, generator)
        limit = self.shift_limit()
        return self.proto(emb, limit), self.proto.alignment(hand, seen, limit)

    def mi_loss(self, feats: Tensor, soft: Tensor, hand: Tensor, logits: Tensor) -> Tensor:
        """L_mi (minimised): InfoNCE between views, minus IIC's MI of their predictions, or 0."""
        if self.options.mi == "none":
            return feats.new_zeros(())
        if self.options.mi == "infonce":
            return infonce_loss(soft, hand, self.options.mi_temperature)
        p_soft = logits.float().softmax(-1)
        p_hand = scores(feats, hand, self.logit_scale).float().softmax(-1)
        return -iic_mutual_information(p_soft, p_hand)

    def aug_loss(self, feats: Tensor, labels: Tensor, soft: Tensor, generator: torch.Generator) -> Tensor:
        """L_aug of ``mixup``, ``feature`` and ``protoview`` (module docstring); 0 for ``none``,
        or when a step has nothing to draw from yet."""
        opts, zero = self.options, feats.new_zeros(())
        if opts.visual_aug == "mixup":
            return self.mixup_loss(feats, labels, soft, generator)
        if self.feature_bank is None:
            return zero
        self.feature_bank.observe(feats, labels)
        if opts.visual_aug == "feature":
            x_v, y_v = self.feature_bank.sample(opts.feature_draws, opts.feature_shrink, generator)
            if not len(y_v):
                return zero
            return F.cross_entropy(scores(x_v.to(soft.device, soft.dtype), soft, self.logit_scale), y_v.to(soft.device))
        seen = self.feature_bank.count > 0  # protoview
        if int(seen.sum()) < 2:
            return zero
        protos = self.feature_bank.prototypes()[seen].to(soft.device, soft.dtype)
        return infonce_loss(soft[seen.to(soft.device)], protos, opts.mi_temperature)

    def mixup_loss(self, feats: Tensor, labels: Tensor, soft: Tensor, generator: torch.Generator) -> Tensor:
        """CE of same-class mixes against t^s, plus CE of virtual classes among [t^s; t^v]."""
        loss = feats.new_zeros(())
        x_same, y_same = same_class_mixup(feats, labels, self.options.mixup_alpha, generator)
        if len(y_same):
            loss = loss + F.cross_entropy(scores(x_same, soft, self.logit_scale), y_same)
        x_v, t_v = virtual_classes(feats, labels, soft, self.options.mixup_alpha, generator)
        if len(x_v):
            targets = torch.arange(len(x_v), device=x_v.device) + soft.shape[0]
            loss = loss + F.cross_entropy(scores(x_v, torch.cat([soft, t_v]), self.logit_scale), targets)
        return loss

    def inference_state(self) -> dict[str, Any]:
        opts = self.options
        return {"infer": opts.infer, "ensemble_weight": opts.ensemble_weight, "handcrafted": opts.handcrafted,
                "visual_aug": opts.visual_aug, "proto_eval": opts.proto_eval}
