"""CoOp's prompt learner: initialised from "a photo of a", it is the hand-written prompt."""
from __future__ import annotations

import pytest
import torch

from dvpt.errors import ConfigError
from dvpt.prompts.handcrafted import handcrafted_features
from dvpt.prompts.learner import PromptLearner

# names of different token lengths (the tiny tokenizer is character-level)
CLASSNAMES = ["cat", "hippopotamus", "sea_lion", "x", "great white shark"]


def test_context_from_words_equals_backbone_text_features(tiny):
    learner = PromptLearner(tiny, CLASSNAMES, ctx_init="a photo of a")
    ours = learner()
    ref = tiny.encode_text([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert learner.n_ctx == len(tiny.tokenize(["a photo of a"]).ids[0]) - 2


def test_handcrafted_view_is_normalised_template_features(tiny):
    feats = handcrafted_features(tiny, CLASSNAMES, ["a photo of a {}."])
    ref = torch.nn.functional.normalize(tiny.encode_text([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES]), dim=-1)
    torch.testing.assert_close(feats, ref, rtol=0, atol=1e-6)


def test_template_ensemble_averages_in_feature_space(tiny):
    t = ["a photo of a {}.", "art of the {}."]
    ens = handcrafted_features(tiny, CLASSNAMES, t)
    a, b = (handcrafted_features(tiny, CLASSNAMES, [x]) for x in t)
    torch.testing.assert_close(ens, torch.nn.functional.normalize(a + b, dim=-1), rtol=0, atol=1e-6)


def test_random_and_class_specific_context(tiny):
    torch.manual_seed(0)
    shared = PromptLearner(tiny, CLASSNAMES, n_ctx=6, ctx_init=None)
    assert shared.ctx.shape == (6, tiny.text_width)
    assert 0.01 < float(shared.ctx.detach().std()) < 0.03  # N(0, 0.02)
    csc = PromptLearner(tiny, CLASSNAMES, n_ctx=3, ctx_init=None, class_specific=True)
    assert csc.ctx.shape == (len(CLASSNAMES), 3, tiny.text_width)
    assert csc().shape == (len(CLASSNAMES), tiny.embed_dim)


def test_set_classnames_retokenises(tiny):
    learner = PromptLearner(tiny, CLASSNAMES[:2])
    learner.set_classnames(["zebra", "dolphin", "ant"])
    ref = tiny.encode_text(["a photo of a zebra.", "a photo of a dolphin.", "a photo of a ant."])
    torch.testing.assert_close(learner(), ref, rtol=0, atol=1e-5)


def test_class_specific_context_refuses_other_classes(tiny):
    learner = PromptLearner(tiny, CLASSNAMES[:2], class_specific=True)
    with pytest.raises(ConfigError, match="class-specific"):
        learner.set_classnames(["a", "b", "c"])


def test_gradients_reach_only_the_context(tiny):
    learner = PromptLearner(tiny, CLASSNAMES)
    learner().pow(2).sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.parameters())
