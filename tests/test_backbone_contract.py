"""One contract for every registered backbone (read from the registry, not a hand list).

Whatever library stands behind a backbone, prompt tuning relies on these: ``encode_text``
equals the wrapped library's own text encoder; tokens end at the end token; the fast text
path (shared prefix, real length, chunks, checkpointing, deep prompts) equals the plain loop
in values and gradients; a soft context initialised from a template gives the template's
features; padding columns and empty or zero-length deep prompts change nothing; deep prompts
reach both towers; the weights are frozen and no method's training step changes them; cache
identities differ between backbones and between weights. A new backbone is registered and
passes this file (docs/backbones.md). ViT-B/16-sized backbones are in the slow set (they take
seconds to build on a CPU).
"""
from __future__ import annotations

import pytest
import torch

from dvpt.backbones import BACKBONES, Backbone, Tokens, load_backbone
from dvpt.backbones.text_path import SharedPrefix, TextOptions
from dvpt.config.loader import from_dict, method_preset
from dvpt.methods import METHODS, Batch, get_method
from dvpt.prompts.learner import PromptLearner

from conftest import first_step

NAMES = ["cat", "golden retriever", "ox", "a very long class name indeed", "yak"]
ATOL = 2e-5

TEXTS = ["a photo of a cat.", "dog", "a blurry photo of a big yellow bus"]


def _params() -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if "b16" in name else name for name in BACKBONES.names()]


@pytest.fixture(params=_params())
def backbone(request: pytest.FixtureRequest) -> Backbone:
    return load_backbone(request.param)


def test_encode_text_equals_the_library_encoder(backbone: Backbone) -> None:
    with torch.no_grad():
        ours, lib = backbone.encode_text(TEXTS), backbone.library_encode_text(TEXTS)
    assert ours.shape == lib.shape == (len(TEXTS), backbone.embed_dim)
    torch.testing.assert_close(ours, lib, atol=1e-5, rtol=0)


def test_soft_context_from_a_template_gives_the_template_features(backbone: Backbone) -> None:
    """Context vectors initialised from "a photo of a" are token for token the sentence."""
    learner = PromptLearner(backbone, NAMES, ctx_init="a photo of a")
    with torch.no_grad():
        ours = learner()
        template = backbone.encode_text([f"a photo of a {name}." for name in NAMES])
    torch.testing.assert_close(ours, template, atol=1e-5, rtol=0)


FAST_PATHS = {
    "prefix": (TextOptions(), None),
    "no-prefix": (TextOptions(share_prefix=False), None),
    "chunks": (TextOptions(chunk=2), None),
    "checkpoint": (TextOptions(checkpoint=True), None),
    "chunks+checkpoint+deep": (TextOptions(chunk=3, checkpoint=True), "shared"),
    "deep-per-prompt": (TextOptions(), "per-prompt"),
}


@pytest.mark.parametrize("case", FAST_PATHS)
def test_fast_text_path_equals_plain_path_values_and_gradients(backbone: Backbone, case: str) -> None:
    """Prompts padded past their real length, through ``encode_text_embeddings`` with a shared
    prefix promise and each option, against ``encode_text_plain`` on the same inputs."""
    options, deep_kind = FAST_PATHS[case]
    torch.manual_seed(0)
    learner = PromptLearner(backbone, NAMES, n_ctx=4, ctx_init=None)
    with torch.no_grad():
        learner.ctx.normal_(0, 0.5)
    tokens, pad = learner.tokens, 3
    ids = torch.cat([tokens.ids, tokens.ids[:, -1:].expand(-1, pad)], dim=1)
    padded = Tokens(ids, torch.cat([tokens.attention_mask, torch.zeros(len(NAMES), pad, dtype=torch.long)], dim=1))
    pad_embeddings = backbone.embed_tokens(ids[:, -pad:]).float()
    deep: list[torch.Tensor] = []
    if deep_kind:  # the cases with deep prompts (the others pass None)
        assert backbone.text_layers > 1, "a backbone for deep prompts needs at least two text blocks"
        shape = (6, backbone.text_width) if deep_kind == "shared" else (len(NAMES), 3, backbone.text_width)
        deep = [torch.randn(shape, requires_grad=True) for _ in range(backbone.text_layers - 1)]
    weights = torch.linspace(-1, 1, len(NAMES) * backbone.embed_dim).view(len(NAMES), -1)

    def run(encode) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = encode(torch.cat([learner.embeddings(), pad_embeddings], dim=1))
        grads = torch.autograd.grad((out * weights).sum(), [learner.ctx, *deep])
        return out.detach(), list(grads)

    ref, ref_grads = run(lambda emb: backbone.encode_text_plain(emb, padded, deep or None))
    out, grads = run(lambda emb: backbone.encode_text_embeddings(
        emb, padded, deep or None, prefix=SharedPrefix(1 + learner.n_ctx), options=options))
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-4)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)


def test_zero_length_deep_prompts_change_nothing(backbone: Backbone) -> None:
    images = torch.randn(2, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(1))
    tokens = backbone.tokenize(TEXTS)
    emb = backbone.embed_tokens(tokens.ids)
    with torch.no_grad():
        empty_vision = [torch.zeros(0, backbone.vision_width)] * min(2, backbone.vision_layers)
        torch.testing.assert_close(backbone.encode_image(images, empty_vision), backbone.encode_image(images),
                                   atol=1e-6, rtol=0)
        empty_text = [torch.zeros(0, backbone.text_width)] * (backbone.text_layers - 1)
        torch.testing.assert_close(backbone.encode_text_embeddings(emb, tokens, empty_text),
                                   backbone.encode_text_embeddings(emb, tokens), atol=1e-6, rtol=0)


def _backbone_methods() -> list:
    """Every method that learns (``learns``) on every registered backbone. On micro, whose
    MiniLM text tower makes the teacher-heavy methods slow on a CPU, all but one shallow
    (CoOp) and one deep (MaPLe) method are in the slow set; ViT-B/16-sized backbones are
    parametrised out with the reason (the same adapter code as tiny-random, at a size where
    one step per method takes minutes on a CPU)."""
    pairs = []
    for name in BACKBONES.names():
        for method in METHODS.names():
            if not get_method(method).learns:
                continue
            marks = []
            if "b16" in name:
                marks = [pytest.mark.skip(reason=f"{name}: ViT-B/16-sized, minutes per step on a CPU; "
                                                 "its adapter code runs here as tiny-random")]
            elif name == "micro" and method not in ("coop", "maple"):
                marks = [pytest.mark.slow]
            pairs.append(pytest.param(name, method, id=f"{name}-{method}", marks=marks))
    return pairs


@pytest.mark.parametrize("backbone_name, method_name", _backbone_methods())
def test_a_training_step_changes_no_backbone_weight(backbone_name: str, method_name: str) -> None:
    backbone = load_backbone(backbone_name)
    cls = get_method(method_name)
    options = from_dict(cls.Options, method_preset(method_name).get("options", {}), "options")
    torch.manual_seed(0)
    method = cls(backbone, NAMES[:3], ["a photo of a {}."], options).set_text_options(TextOptions(chunk=2))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    learnable = [p for p in method.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in learnable]
    images = torch.randn(3, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(learnable, lr=0.5)
    method.train()
    method.backward_and_step(method.losses(Batch(labels=torch.arange(3), images=images), first_step()), optimizer)
    assert any(not torch.equal(p, s) for p, s in zip(learnable, start)), "the method learned nothing"
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(before[k], v)]
    assert not changed, f"{method_name} changed backbone weights {changed[:3]}"
    assert not any(p.requires_grad for p in backbone.parameters())


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
    assert backbone.text_layers > 1, "a backbone for deep prompts needs at least two text blocks"
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


@pytest.mark.parametrize("name", [n for n in BACKBONES.names() if "b16" not in n])
def test_identities_differ_between_weights(name: str) -> None:
    """A fresh copy has the shared one's identity; one changed weight gives another."""
    fresh = BACKBONES.get(name)()
    assert fresh.identity() == load_backbone(name).identity()
    other = BACKBONES.get(name)()
    with torch.no_grad():
        next(p for p in other.parameters() if p.numel() > 1).view(-1)[0] += 1e-3
    assert other.identity() != fresh.identity()


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


LIBRARY_NAMES = {
    "hf_clip.py": ["layer_norm1", "layer_norm2", "self_attn", "q_proj", "k_proj", "v_proj", "final_layer_norm",
                   "text_model", "encoder.layers"],
    "open_clip.py": ["resblocks", "in_proj_weight", "ln_final", "ls_1", "positional_embedding"],
}


def test_library_names_stay_in_their_adapter() -> None:
    """The fast path and the prompts speak the Backbone interface only: each library's layer
    attribute names appear in that library's adapter module and nowhere else in the package."""
    from pathlib import Path

    import dvpt

    root = Path(dvpt.__file__).parent
    leaks = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for owner, names in LIBRARY_NAMES.items():
            if path.name == owner and path.parent.name == "backbones":
                continue
            leaks += [f"{path.relative_to(root)}: {n}" for n in names if f".{n}" in text]
    assert not leaks, leaks
