"""One contract for every registered backbone (read from the registry, not a hand list).

Whatever library stands behind a backbone, prompt tuning relies on these: tokens end at the
end token, the plain text path is ``encode_text_embeddings`` of ``embed_tokens``, padding
columns change nothing, empty deep prompts give the frozen model's image features, deep
prompts reach both towers, the weights are frozen, and cache identities are distinct.
ViT-B/16-sized backbones are in the slow set (they take seconds to build on a CPU).
"""
from __future__ import annotations

import pytest
import torch

from dvpt.backbones import BACKBONES, Backbone, Tokens, load_backbone

TEXTS = ["a photo of a cat.", "dog", "a blurry photo of a big yellow bus"]


def _params() -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if "b16" in name else name for name in BACKBONES.names()]


@pytest.fixture(params=_params())
def backbone(request: pytest.FixtureRequest) -> Backbone:
    return load_backbone(request.param)


def test_plain_text_path_and_end_tokens(backbone: Backbone) -> None:
    tokens = backbone.tokenize(TEXTS)
    assert tokens.ids.shape[1] == int(tokens.lengths.max()) <= backbone.max_text_length
    feats = backbone.encode_text(TEXTS)
    assert feats.shape == (3, backbone.embed_dim) and torch.isfinite(feats).all()
    again = backbone.encode_text_embeddings(backbone.embed_tokens(tokens.ids), tokens)
    torch.testing.assert_close(feats, again, atol=1e-5, rtol=0)


def test_padding_columns_change_nothing(backbone: Backbone) -> None:
    tokens = backbone.tokenize(TEXTS)
    pad = 3
    ids = torch.cat([tokens.ids, tokens.ids[:, -1:].expand(-1, pad)], dim=1)
    mask = torch.cat([tokens.attention_mask, torch.zeros(len(TEXTS), pad, dtype=tokens.attention_mask.dtype)], dim=1)
    padded = Tokens(ids, mask)
    plain = backbone.encode_text_embeddings(backbone.embed_tokens(tokens.ids), tokens)
    longer = backbone.encode_text_embeddings(backbone.embed_tokens(padded.ids), padded)
    torch.testing.assert_close(plain, longer, atol=1e-5, rtol=0)


def test_deep_prompts_reach_both_towers_and_none_change_nothing(backbone: Backbone) -> None:
    images = torch.randn(2, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(0))
    frozen = backbone.encode_image(images)
    torch.testing.assert_close(backbone.encode_image(images, []), frozen, atol=1e-6, rtol=0)
    prompts = [torch.randn(2, backbone.vision_width) for _ in range(min(2, backbone.vision_layers))]
    assert not torch.allclose(backbone.encode_image(images, prompts), frozen, atol=1e-4)
    tokens = backbone.tokenize(TEXTS)
    emb = backbone.embed_tokens(tokens.ids)
    plain = backbone.encode_text_embeddings(emb, tokens)
    torch.testing.assert_close(backbone.encode_text_embeddings(emb, tokens, []), plain, atol=1e-6, rtol=0)
    if backbone.text_layers > 1:
        deep = backbone.encode_text_embeddings(emb, tokens, [torch.randn(1, backbone.text_width)])
        assert not torch.allclose(deep, plain, atol=1e-4)


def test_frozen_and_gradients_reach_only_the_inputs(backbone: Backbone) -> None:
    assert all(not p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not any(m.training for m in backbone.modules())
    tokens = backbone.tokenize(TEXTS[:2])
    emb = backbone.embed_tokens(tokens.ids).detach().requires_grad_(True)
    backbone.encode_text_embeddings(emb, tokens).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_identities_differ_between_backbones() -> None:
    names = [n for n in BACKBONES.names() if "b16" not in n]
    ids = {load_backbone(n).identity() for n in names}
    assert len(ids) == len(names)


def test_weight_fingerprint_is_exact_and_independent_of_thread_count() -> None:
    """Cache keys hash the weight bytes: a float sum changed with the thread count (two keys
    for one model), and it could miss a change that keeps the sum."""
    from dvpt.backbones.base import weight_fingerprint

    layer = torch.nn.Linear(4096, 64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = weight_fingerprint(layer)
        torch.set_num_threads(2)
        assert weight_fingerprint(layer) == one
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        layer.weight[0, :2] += torch.tensor([1e-3, -1e-3])  # same sum, other weights
    assert weight_fingerprint(layer) != one
