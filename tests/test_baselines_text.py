"""CoCoOp, KgCoOp and ProGrad: each method's defining property, and a CLI run of each.

Tiny random CLIP and either random cached-feature batches or a folder of coloured squares.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dvpt.backbones.hf_clip import HFCLIPBackbone
from dvpt.cli import main
from dvpt.config.loader import from_dict
from dvpt.engine import runner
from dvpt.engine.checkpoint import LEARNABLE, load_learnable
from dvpt.engine.session import Session
from dvpt.methods import get_method
from dvpt.methods import cocoop as cocoop_module
from dvpt.methods.base import Batch
from dvpt.methods.kgcoop import consistency
from dvpt.methods.prograd import template_words

from conftest import first_step

CLASSES = ["red square", "green square", "blue square", "yellow square", "white circle"]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}


@pytest.fixture(scope="module")
def backbone() -> HFCLIPBackbone:
    torch.set_num_threads(1)
    return HFCLIPBackbone.tiny_random()


def build(backbone, name: str, templates=("a photo of a {}.",), classes=CLASSES, **options):
    cls = get_method(name)
    torch.manual_seed(0)
    return cls(backbone, classes, list(templates), from_dict(cls.Options, options)).eval()


def feature_batch(backbone, n: int = 6, seed: int = 0, n_classes: int = len(CLASSES)) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    return Batch(labels=torch.randint(0, n_classes, (n,), generator=gen),
                 features=torch.randn(n, backbone.embed_dim, generator=gen))


# ---- CoCoOp ---------------------------------------------------------------------------
def capture_text_inputs(monkeypatch) -> list[torch.Tensor]:
    """Record the prompt embeddings CoCoOp sends through the text tower."""
    seen: list[torch.Tensor] = []
    original = cocoop_module.encode_prompts

    def spy(backbone, embeddings, tokens, *args, **kwargs):
        seen.append(embeddings.detach().clone())
        return original(backbone, embeddings, tokens, *args, **kwargs)

    monkeypatch.setattr(cocoop_module, "encode_prompts", spy)
    return seen


def test_cocoop_shift_is_per_image_and_shared_by_classes(backbone, monkeypatch):
    method = build(backbone, "cocoop")
    batch = feature_batch(backbone, n=3)
    seen = capture_text_inputs(monkeypatch)
    logits = method.logits(batch)
    assert logits.shape == (3, len(CLASSES))
    learner = method.prompt_learner
    m = learner.n_ctx
    prompts = torch.cat(seen).view(3, len(CLASSES), -1, backbone.text_width)
    shift = prompts[:, :, 1 : 1 + m] - learner.ctx.detach()  # [B, C, M, D]
    # one shift per image, the same for every class and every context position ...
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert torch.allclose(shift, shift[:, :, :1].expand_as(shift), atol=1e-6)
    # ... equal to the meta-network of that image's normalised feature, different per image
    expected = method.meta_net(F.normalize(batch.features, dim=-1)).detach()
    assert torch.allclose(shift[:, 0, 0], expected, atol=1e-6)
    assert (shift[0, 0, 0] - shift[1, 0, 0]).abs().max() > 1e-4
    # the class-name part of the prompts is identical across images
    assert torch.equal(prompts[0, :, 1 + m :], prompts[2, :, 1 + m :])


def test_cocoop_logits_match_per_image_reference(backbone):
    method = build(backbone, "cocoop")
    batch = feature_batch(backbone, n=4, seed=1)
    feats = F.normalize(batch.features, dim=-1)
    with torch.no_grad():
        got = method.logits(batch)
        for b in range(4):
            ctx = method.prompt_learner.context(method.meta_net(feats[b]))
            text = F.normalize(method.prompt_learner(ctx), dim=-1)
            assert torch.allclose(got[b], method.logit_scale * feats[b] @ text.t(), atol=1e-5)


def test_cocoop_chunked_equals_unchunked(backbone):
    batch = feature_batch(backbone, n=5, seed=2)
    with torch.no_grad():
        whole = build(backbone, "cocoop", image_chunk=5).logits(batch)
        for chunk in (1, 2, 0):
            assert torch.allclose(build(backbone, "cocoop", image_chunk=chunk).logits(batch), whole, atol=1e-5)


def test_cocoop_meta_net_and_context_get_gradients(backbone):
    method = build(backbone, "cocoop").train()
    method.losses(feature_batch(backbone, n=2, seed=3), first_step())["loss"].backward()
    for name, param in method.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert {n.split(".")[0] for n, _ in method.named_parameters()} == {"prompt_learner", "meta_net"}


def test_cocoop_has_no_image_independent_classifier(backbone):
    method = build(backbone, "cocoop")
    with pytest.raises(NotImplementedError):
        method.classifier()
    assert method.classifier_or_none() is None
    assert method.uses_image_tower is False


# ---- KgCoOp ---------------------------------------------------------------------------
def test_kgcoop_term_is_zero_at_the_template_and_positive_after_perturbing(backbone):
    method = build(backbone, "kgcoop", ctx_init="a photo of a", template="a photo of a {}.")
    batch = feature_batch(backbone, n=8, seed=4)
    terms = method.losses(batch, first_step())
    assert abs(float(terms["kg"])) < 1e-5
    assert torch.allclose(terms["loss"], terms["ce"] + 8.0 * terms["kg"], atol=1e-6)
    with torch.no_grad():
        method.prompt_learner.ctx.add_(0.5 * torch.randn_like(method.prompt_learner.ctx))
    terms = method.losses(batch, first_step())
    assert float(terms["kg"]) > 1e-3
    assert torch.allclose(terms["loss"], terms["ce"] + 8.0 * terms["kg"], atol=1e-6)
    # the term equals 1 - mean cosine against the backbone's own encoding of the template
    handcrafted = backbone.encode_text([f"a photo of a {c}." for c in CLASSES])
    assert torch.allclose(terms["kg"], consistency(method.classifier(), handcrafted).detach(), atol=1e-6)


def test_kgcoop_uses_its_own_template_table(backbone):
    method = build(backbone, "kgcoop", templates=("{} texture.",))
    expected = F.normalize(backbone.encode_text([f"a photo of a {c}, a type of texture." for c in CLASSES]), dim=-1)
    assert torch.allclose(method.handcrafted(), expected, atol=1e-6)


# ---- ProGrad --------------------------------------------------------------------------
def raw_gradients(method, batch) -> tuple[torch.Tensor, torch.Tensor]:
    terms = method.losses(batch, first_step())
    ctx = method.prompt_learner.ctx
    (g_kl,) = torch.autograd.grad(terms["kl"], [ctx], retain_graph=True)
    (g_ce,) = torch.autograd.grad(terms["loss"], [ctx])
    return g_ce, g_kl


def applied_gradient(method, batch, scaler=None) -> torch.Tensor:
    optimizer = torch.optim.SGD(method.parameters(), lr=0.0)
    optimizer.zero_grad(set_to_none=True)
    method.backward_and_step(method.losses(batch, first_step()), optimizer, scaler)
    return method.prompt_learner.ctx.grad.detach().clone()


def test_prograd_initialises_context_from_the_template(backbone):
    method = build(backbone, "prograd", templates=("a photo of a {}, a type of pet.",))
    assert method.template == "a type of pet, a photo of a {}."
    words = template_words(method.template)
    ids = backbone.tokenize([words]).ids[0, 1:-1]
    n = min(len(ids), method.prompt_learner.n_ctx)
    ctx = method.prompt_learner.ctx.detach()
    assert ctx.shape[0] == 16
    assert torch.equal(ctx[-n:], backbone.embed_tokens(ids[-n:].unsqueeze(0))[0].detach())
    assert torch.count_nonzero(ctx[:-n]) == 0


def test_prograd_never_applies_a_gradient_against_the_general_direction(backbone):
    method = build(backbone, "prograd", classes=CLASSES[:4]).train()
    conflicts = 0
    for seed in range(40):
        batch = feature_batch(backbone, n=4, seed=100 + seed, n_classes=4)
        g_ce, g_kl = raw_gradients(method, batch)
        if float((g_ce * g_kl).sum()) >= 0:
            continue
        conflicts += 1
        applied = applied_gradient(method, batch)
        unit = g_kl / g_kl.norm()
        assert float((applied * g_kl).sum()) >= -1e-6 * float(applied.norm() * g_kl.norm())
        assert torch.allclose(applied, g_ce - (g_ce * unit).sum() * unit, atol=1e-6)
        assert not torch.allclose(applied, g_ce)
        if conflicts == 4:
            break
    assert conflicts >= 4, "too few conflicting batches to test the projection"


def test_prograd_leaves_agreeing_gradients_alone(backbone):
    method = build(backbone, "prograd", classes=CLASSES[:4]).train()
    for seed in range(40):
        batch = feature_batch(backbone, n=4, seed=200 + seed, n_classes=4)
        g_ce, g_kl = raw_gradients(method, batch)
        if float((g_ce * g_kl).sum()) > 0:
            assert torch.equal(applied_gradient(method, batch), g_ce)
            return
    pytest.fail("no batch with agreeing gradients among 40")


def test_prograd_partial_projection_and_grad_scaler(backbone):
    method = build(backbone, "prograd", classes=CLASSES[:4], lam=0.5).train()
    for seed in range(40):
        batch = feature_batch(backbone, n=4, seed=300 + seed, n_classes=4)
        g_ce, g_kl = raw_gradients(method, batch)
        if float((g_ce * g_kl).sum()) < 0:
            break
    else:
        pytest.fail("no batch with conflicting gradients among 40")
    unit = g_kl / g_kl.norm()
    expected = g_ce - 0.5 * (g_ce * unit).sum() * unit
    assert torch.allclose(applied_gradient(method, batch), expected, atol=1e-6)
    # a GradScaler scales both losses; after its step the applied gradient is unscaled
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    assert torch.allclose(applied_gradient(method, batch, scaler), expected, rtol=1e-5, atol=1e-7)


# ---- every method through the CLI ------------------------------------------------------
@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """Four classes of coloured squares, 10 images each (folder dataset layout)."""
    root = tmp_path_factory.mktemp("squares")
    for name, rgb in COLOURS.items():
        (root / name).mkdir()
        for i in range(10):
            image = Image.new("RGB", (32, 32), (255, 255, 255))
            colour = tuple(max(0, min(255, v + (i * 7) % 30 - 15)) for v in rgb)
            image.paste(colour, (4 + i % 5, 4 + i % 3, 24 + i % 5, 26))
            image.save(root / name / f"{i}.png")
    return root


class RecordingSession(Session):
    """A Session that remembers itself, the backbone state it started with and its methods."""

    made: list["RecordingSession"] = []

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.backbone_before = {k: v.clone() for k, v in self.backbone.state_dict().items()}
        self.methods = []
        RecordingSession.made.append(self)

    def build_method(self, classnames, templates):
        method = super().build_method(classnames, templates)
        self.methods.append((method, list(templates)))
        return method


@pytest.mark.parametrize("protocol", ["base2novel", "all"])
@pytest.mark.parametrize("name", ["cocoop", "kgcoop", "prograd"])
def test_trains_and_evaluates_through_the_cli(name, protocol, squares, tmp_path, monkeypatch):
    RecordingSession.made.clear()
    monkeypatch.setattr(runner, "Session", RecordingSession)
    monkeypatch.setenv("DVPT_NO_PROGRESS", "1")
    out = tmp_path / "run"
    code = main(["train", "--method", name, "--backbone", "tiny-random", "--dataset", "folder",
                 "--root", str(squares), "--protocol", protocol, "--epochs", "2", "--batch-size", "4",
                 "--shots", "4", "--threads", "1", "--set", "cache.views=2", "-o", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    keys = ("base", "novel", "hm") if protocol == "base2novel" else ("accuracy",)
    for key in keys:
        assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= 100, (key, metrics[key])
    assert len(metrics["history"]) == 2 and all(math.isfinite(h["loss"]) for h in metrics["history"])

    (session,) = RecordingSession.made
    after = session.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in session.backbone_before.items())

    # the checkpoint alone reproduces the trained method's logits exactly
    trained, templates = session.methods[0]
    fresh = session.build_method(trained.classnames, templates)
    with torch.no_grad():
        fresh.prompt_learner.ctx.add_(1.0)  # make sure loading overwrites it
    load_learnable(fresh, out / "checkpoint" / LEARNABLE)
    batch = feature_batch(session.backbone, n=3, seed=5, n_classes=len(trained.classnames))
    with torch.no_grad():
        assert torch.equal(fresh.eval().logits(batch), trained.eval().logits(batch))


# ---- presets ----------------------------------------------------------------------------
PUBLISHED = {
    "coop": ({"epochs": 200, "batch_size": 32, "lr": 0.002}, {"n_ctx": 4, "ctx_init": "a photo of a"}),
    "cocoop": ({"epochs": 10, "batch_size": 1, "lr": 0.002}, {"n_ctx": 4, "ctx_init": "a photo of a"}),
    "kgcoop": ({"epochs": 100, "batch_size": 128, "lr": 0.002}, {"n_ctx": 4, "weight": 8.0}),
    "prograd": ({"epochs": 100, "batch_size": 32, "lr": 0.002},
                {"n_ctx": 16, "ctx_init": "template", "lam": 1.0, "temperature": 1.0}),
    "zeroshot": ({}, {"templates": "dataset"}),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_hold_the_published_recipes(name):
    from dvpt.config.loader import build_config, validate_method_options

    cfg = build_config(method=name)
    optim, options = PUBLISHED[name]
    assert {k: getattr(cfg.optim, k) for k in optim} == optim
    resolved = validate_method_options(cfg)
    assert {k: getattr(resolved, k) for k in options} == options
    # a flag still wins over the preset
    assert build_config(method=name, flags={"optim": {"epochs": 3}}).optim.epochs == 3
