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
from .base import Batch, cross_entropy_terms, register_method, scores
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

    def build(self) -> None:
        super().build()  # CoOp's prompt learner
        backbone, classnames, options = self.backbone, self.classnames, self.options
        self.proto = None
        if options.visual_aug == "proto":  # built after the learner: CoOp's random draws come first
            self.proto = ProtoShift(backbone.embed_dim, backbone.text_width, classnames, options.proto_hidden)
        self.feature_bank = None
        if options.visual_aug in ("feature", "protoview"):
            self.feature_bank = FeatureBank(backbone.embed_dim, len(classnames))
        # epochs finished (saved with checkpoints): the method's random draws depend on (seed, epoch)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._seed = torch.initial_seed()
        self._rng: tuple[int, torch.Generator] | None = None

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
    def losses(self, batch: Batch) -> dict[str, Tensor]:
        opts = self.options
        feats = self.image_features(batch)
        hand = self.hand_features()
        extra: dict[str, Tensor] = {}
        shift = None
        if self.proto is not None:
            self.proto.observe(feats, batch.labels)
            emb, seen = self.proto.train_embeddings(hand, opts.proxy_prob, self.generator())
            limit = self.shift_limit()
            shift = self.proto(emb, limit)
            extra["aug"] = self.proto.alignment(hand, seen, limit)
        soft = self.soft_features(shift)
        logits = scores(feats, soft, self.logit_scale)
        terms = cross_entropy_terms(logits, batch.labels)
        loss = terms["loss"]
        if opts.mi != "none":
            extra["mi"] = self.mi_loss(feats, soft, hand, logits)
            loss = loss + opts.lambda_mi * extra["mi"]
            if opts.mi == "infonce":
                terms["mi_bound"] = infonce_mi_bound(extra["mi"].detach(), len(self.classnames))
        if opts.visual_aug == "mixup":
            extra["aug"] = self.mixup_loss(feats, batch.labels, soft)
        if self.feature_bank is not None:
            self.feature_bank.observe(feats, batch.labels)
        if self.feature_bank is not None and opts.visual_aug == "feature":
            x_v, y_v = self.feature_bank.sample(opts.feature_draws, opts.feature_shrink, self.generator())
            if len(y_v):
                x_v = x_v.to(soft.device, soft.dtype)
                extra["aug"] = F.cross_entropy(scores(x_v, soft, self.logit_scale), y_v.to(soft.device))
        if self.feature_bank is not None and opts.visual_aug == "protoview":
            seen = self.feature_bank.count > 0
            if int(seen.sum()) > 1:
                protos = self.feature_bank.prototypes()[seen].to(soft.device, soft.dtype)
                extra["aug"] = infonce_loss(soft[seen.to(soft.device)], protos, opts.mi_temperature)
        if "aug" in extra:
            loss = loss + opts.lambda_aug * extra["aug"]
        terms.update({k: v.detach() for k, v in extra.items()})
        terms["loss"] = loss
        return terms

    def mi_loss(self, feats: Tensor, soft: Tensor, hand: Tensor, logits: Tensor) -> Tensor:
        """L_mi (minimised): InfoNCE between views, or minus IIC's MI of their predictions."""
        if self.options.mi == "infonce":
            return infonce_loss(soft, hand, self.options.mi_temperature)
        p_soft = logits.float().softmax(-1)
        p_hand = scores(feats, hand, self.logit_scale).float().softmax(-1)
        return -iic_mutual_information(p_soft, p_hand)

    def mixup_loss(self, feats: Tensor, labels: Tensor, soft: Tensor) -> Tensor:
        """CE of same-class mixes against t^s, plus CE of virtual classes among [t^s; t^v]."""
        gen = self.generator()
        loss = feats.new_zeros(())
        x_same, y_same = same_class_mixup(feats, labels, self.options.mixup_alpha, gen)
        if len(y_same):
            loss = loss + F.cross_entropy(scores(x_same, soft, self.logit_scale), y_same)
        x_v, t_v = virtual_classes(feats, labels, soft, self.options.mixup_alpha, gen)
        if len(x_v):
            targets = torch.arange(len(x_v), device=x_v.device) + soft.shape[0]
            loss = loss + F.cross_entropy(scores(x_v, torch.cat([soft, t_v]), self.logit_scale), targets)
        return loss

    def generator(self) -> torch.Generator:
        """The method's random stream for the current epoch: seeded by (run seed, epoch)."""
        epoch = int(self.epochs_done)
        if self._rng is None or self._rng[0] != epoch:
            self._rng = (epoch, torch.Generator().manual_seed(self._seed * 1_000_003 + epoch))
        return self._rng[1]

    def on_epoch_end(self, epoch: int, epochs: int) -> None:
        self.epochs_done.fill_(epoch)

    def inference_state(self) -> dict[str, Any]:
        opts = self.options
        return {"infer": opts.infer, "ensemble_weight": opts.ensemble_weight, "handcrafted": opts.handcrafted,
                "visual_aug": opts.visual_aug, "proto_eval": opts.proto_eval}
