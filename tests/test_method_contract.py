"""Contract tests over every registered method (as timm does for every model).

For each method: one training step on a small batch leaves the frozen backbone
bit-identical, gives every trainable parameter a gradient, and a save/load round trip
reproduces the logits exactly; the class list can be switched to unseen names.
"""
from __future__ import annotations

import pytest
import torch

from dvpt.config.loader import from_dict, method_preset
from dvpt.engine.checkpoint import load_learnable, save_learnable
from dvpt.methods import METHODS, Batch, get_method

from conftest import first_step

NAMES = ["red", "green", "blue", "yellow"]
TEMPLATES = ["a photo of a {}.", "a {} square."]


def build(name: str, tiny, classnames=NAMES):
    cls = get_method(name)
    options = from_dict(cls.Options, method_preset(name).get("options", {}), "options")
    torch.manual_seed(0)
    return cls(tiny, classnames, TEMPLATES, options)


def batch(tiny, n: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, tiny.image_size, tiny.image_size, generator=g)
    labels = torch.arange(n) % len(NAMES)
    return Batch(labels=labels, images=images)


LEARNING = [name for name in METHODS.names() if get_method(name).learns]
#: methods with nothing to learn (``learns = False``): no step to take, so the step contract
#: below is not theirs; test_a_method_that_learns_nothing_has_nothing_to_train covers them
STATIC = [name for name in METHODS.names() if not get_method(name).learns]


@pytest.mark.parametrize("name", METHODS.names())
def test_learns_flag_matches_the_trainable_parameters(name, tiny):
    method = build(name, tiny)
    params = [p for p in method.parameters() if p.requires_grad]
    assert bool(params) == method.learns, f"{name}: learns={method.learns} but {len(params)} trainable parameters"


@pytest.mark.parametrize("name", STATIC)
def test_a_method_that_learns_nothing_has_nothing_to_train(name, tiny, tmp_path):
    """The trainer takes no step, writes no checkpoint and leaves the logits as they were."""
    from dvpt.config.schema import OptimConfig
    from dvpt.engine.features import FeatureBatches
    from dvpt.engine.trainer import Trainer

    method = build(name, tiny).eval()
    assert method.state_dict() == {}
    b = batch(tiny)
    expected = method.logits(b)
    feats = torch.randn(1, 4, tiny.embed_dim)
    history = Trainer(method, FeatureBatches(feats, torch.arange(4), 2, seed=0), OptimConfig(epochs=2),
                      torch.device("cpu"), seed=0, checkpoint_dir=tmp_path).fit()
    assert history == [] and not any(tmp_path.iterdir())
    assert torch.equal(method.logits(b), expected)


@pytest.mark.parametrize("name", LEARNING)
def test_step_trains_only_the_method(name, tiny):
    method = build(name, tiny)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    params = [p for p in method.parameters() if p.requires_grad]
    method.train()
    optimizer = torch.optim.SGD(params, lr=0.1)
    losses = method.losses(batch(tiny), first_step())
    assert torch.isfinite(losses["loss"])
    optimizer.zero_grad()
    losses["loss"].backward()
    for pname, p in method.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: {pname} got no gradient"
    optimizer.zero_grad()
    learnable_before = [p.detach().clone() for p in params]
    method.backward_and_step(method.losses(batch(tiny), first_step()), optimizer)
    changed = [not torch.equal(b, p.detach()) for b, p in zip(learnable_before, params)]
    assert any(changed), f"{name}: a training step changed no learnable parameter"
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items()), "backbone changed"
    assert not any(p.requires_grad for p in tiny.parameters())


@pytest.mark.parametrize("name", METHODS.names())
def test_save_load_reproduces_logits(name, tiny, tmp_path):
    method = build(name, tiny)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.01 * torch.randn_like(p))
    method.eval()
    b = batch(tiny)
    expected = method.logits(b)
    save_learnable(method, tmp_path / "m.safetensors")
    fresh = build(name, tiny)
    load_learnable(fresh, tmp_path / "m.safetensors")
    fresh.eval()
    assert torch.equal(fresh.logits(b), expected)
    assert expected.shape == (len(b), len(NAMES))


@pytest.mark.parametrize("name", METHODS.names())
def test_switching_to_unseen_classes(name, tiny):
    method = build(name, tiny)
    method.eval()
    unseen = ["violet", "orange", "black"]
    method.set_classnames(unseen, TEMPLATES)
    with torch.no_grad():
        logits = method.logits(batch(tiny))
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
