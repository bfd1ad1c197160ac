"""The CLIP adapter equals transformers' own encoders, and padding choices are exact."""
from __future__ import annotations

import torch

from dvpt.backbones.base import Tokens

TEXTS = ["a photo of a cat.", "a photo of a hippopotamus.", "x.", "a photo of a sea lion swimming fast."]


def _pooled(out):
    return out.pooler_output if hasattr(out, "pooler_output") else out


def test_text_features_equal_library_encoder(tiny):
    tokens = tiny.tokenize(TEXTS)
    ours = tiny.encode_text(TEXTS)
    ref = _pooled(tiny.model.get_text_features(input_ids=tokens.ids, attention_mask=tokens.attention_mask))
    assert ours.shape == (len(TEXTS), tiny.embed_dim)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_padding_to_77_changes_nothing(tiny):
    """The tower is causal and pools at EOT: padding to the longest text is exact."""
    short = tiny.tokenize(TEXTS)
    enc = tiny.tokenizer(TEXTS, padding="max_length", max_length=77, return_tensors="pt")
    full = Tokens(enc["input_ids"], enc["attention_mask"])
    assert full.ids.shape[1] == 77 and short.ids.shape[1] < 77
    a = tiny.encode_text_embeddings(tiny.embed_tokens(short.ids), short)
    b = tiny.encode_text_embeddings(tiny.embed_tokens(full.ids), full)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_image_features_equal_library_encoder(tiny):
    images = torch.randn(3, 3, tiny.image_size, tiny.image_size)
    ref = _pooled(tiny.model.get_image_features(pixel_values=images))
    torch.testing.assert_close(tiny.encode_image(images), ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(tiny.encode_image(images, deep_prompts=[]), ref, rtol=0, atol=1e-6)


def test_backbone_is_frozen_and_stays_in_eval(tiny):
    assert not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training


def test_tokens_eot_index_points_at_end_token(tiny):
    tokens = tiny.tokenize(TEXTS)
    eot = tokens.ids[torch.arange(len(TEXTS)), tokens.eot_index]
    assert torch.all(eot == tiny.tokenizer.eos_token_id)


def test_identity_differs_between_weights():
    from dvpt.backbones.hf_clip import HFCLIPBackbone

    a, b = HFCLIPBackbone.tiny_random(seed=0), HFCLIPBackbone.tiny_random(seed=1)
    assert a.identity() != b.identity()
    assert a.identity() == HFCLIPBackbone.tiny_random(seed=0).identity()
