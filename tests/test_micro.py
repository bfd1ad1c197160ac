"""The offline backbone ``micro``: loading, MiniLM parity, deep prompts, zero-shot floor."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dvpt.backbones import micro
from dvpt.data import emoji
from dvpt.errors import BackboneError

SENTENCES = ["an emoji of grinning face, a smiley.", "a flag of Germany.", "x", "an emoji of family: man, woman, girl, boy."]


@pytest.fixture(scope="module")
def backbone() -> micro.MicroBackbone:
    torch.set_num_threads(1)
    return micro.load_micro()


@pytest.fixture(scope="module")
def images(backbone) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(3, 3, backbone.image_size, backbone.image_size)


def test_loads_offline_with_its_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = micro.load_micro()
    assert (model.embed_dim, model.text_width, model.text_layers) == (384, 384, 6)
    assert model.vision_layers == len(model.vision.blocks) >= 3
    assert not any(p.requires_grad for p in model.parameters())
    assert 1 < float(model.logit_scale) <= 100
    assert micro.WEIGHTS.stat().st_size < 20 * 2**20


def test_registered_as_micro() -> None:
    from dvpt.backbones import BACKBONES

    assert "micro" in BACKBONES


def test_text_matches_sentence_transformers(backbone) -> None:
    SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer
    reference = SentenceTransformer(str(micro.minilm_folder()), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    ours = F.normalize(backbone.encode_text(SENTENCES), dim=-1)
    assert torch.allclose(ours, reference.cpu(), atol=1e-5)


def test_tokens_pad_to_the_longest(backbone) -> None:
    tokens = backbone.tokenize(["a", "a longer sentence here"])
    assert tokens.ids.shape[1] == int(tokens.lengths.max())
    assert tokens.ids[0, int(tokens.eot_index[0])] == backbone.text.tokenizer.sep_token_id


def test_no_prompts_equals_empty_list_and_zero_length(backbone, images) -> None:
    base = backbone.encode_image(images)
    assert torch.equal(base, backbone.encode_image(images, []))
    empty = [torch.zeros(0, backbone.vision_width)] * backbone.vision_layers
    assert torch.allclose(base, backbone.encode_image(images, empty), atol=1e-6)
    tokens = backbone.tokenize(SENTENCES)
    emb = backbone.embed_tokens(tokens.ids)
    text = backbone.encode_text_embeddings(emb, tokens)
    assert torch.equal(text, backbone.encode_text_embeddings(emb, tokens, []))
    assert torch.allclose(text, backbone.encode_text_embeddings(emb, tokens, [torch.zeros(0, 384)] * 3), atol=1e-6)


def test_deep_prompts_reach_the_features(backbone, images) -> None:
    torch.manual_seed(1)
    first = [torch.randn(2, backbone.vision_width)]
    deep = first + [torch.randn(2, backbone.vision_width)]
    a, b = backbone.encode_image(images), backbone.encode_image(images, first)
    c = backbone.encode_image(images, deep)
    assert not torch.allclose(a, b, atol=1e-4) and not torch.allclose(b, c, atol=1e-4)
    tokens = backbone.tokenize(["an emoji of a cat."])
    emb = backbone.embed_tokens(tokens.ids)
    prompted = backbone.encode_text_embeddings(emb, tokens, [torch.randn(2, 384)])
    assert not torch.allclose(prompted, backbone.encode_text_embeddings(emb, tokens), atol=1e-4)


def test_deep_prompts_carry_gradients(backbone, images) -> None:
    prompt = torch.zeros(2, backbone.vision_width, requires_grad=True)
    backbone.encode_image(images, [prompt, prompt]).sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0


def test_transforms_give_model_sized_tensors(backbone) -> None:
    from PIL import Image

    img = Image.new("RGB", (64, 64), (200, 10, 10))
    assert backbone.eval_transform()(img).shape == (3, backbone.image_size, backbone.image_size) == (3, 32, 32)
    assert backbone.train_transform()(img).shape == (3, backbone.image_size, backbone.image_size) == (3, 32, 32)


def test_missing_weights_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="dvpt pretrain-micro"):
        micro.load_vision(tmp_path / "micro.safetensors", tmp_path / "micro.json")


def test_zero_shot_is_well_above_chance(backbone, tmp_path: Path) -> None:
    """Base classes of emoji-smileys, 2 test images per class: 20% at least (~16x chance;
    the shipped weights give ~40%)."""
    from dvpt.data.loading import open_image

    recipe = emoji.RenderRecipe(counts=(("train", 0), ("val", 0), ("test", 2)))
    splits = emoji.load_emoji("emoji-smileys", tmp_path, "color", recipe=recipe)
    base = math.ceil(splits.num_classes / 2)
    test = [d for d in splits.test if d.label < base]
    transform = backbone.eval_transform()
    with torch.no_grad():
        feats = F.normalize(backbone.encode_image(torch.stack([transform(open_image(d.path)) for d in test])), dim=-1)
        text = F.normalize(backbone.encode_text([splits.templates[0].format(n) for n in splits.classnames[:base]]), dim=-1)
    accuracy = float(((feats @ text.T).argmax(1) == torch.tensor([d.label for d in test])).float().mean())
    assert accuracy > max(3 / base, 0.2)


def test_cli_rejects_a_bad_budget(capsys: pytest.CaptureFixture) -> None:
    from dvpt.cli import main

    assert main(["pretrain-micro", "--steps", "0"]) == 2
    assert "--steps must be positive" in capsys.readouterr().err
