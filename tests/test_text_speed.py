"""The text tower's fast paths are exact: same features and same gradients as the full
77-token computation (tiny-random CLIP, float32)."""
from __future__ import annotations

import pytest
import torch

from dvpt.backbones import text_path
from dvpt.backbones.base import Backbone, Tokens
from dvpt.backbones.hf_clip import HFCLIPBackbone
from dvpt.engine.device import resolve_precision
from dvpt.errors import ConfigError
from dvpt.prompts.learner import PromptLearner, encode_prompts
from dvpt.prompts.text_encoding import SharedPrefix, TextOptions

NAMES = ["cat", "golden retriever", "ox", "a very long class name indeed", "yak"]
ATOL = 2e-5


@pytest.fixture(scope="module")
def backbone() -> HFCLIPBackbone:
    return HFCLIPBackbone.tiny_random()


class NonCausal(HFCLIPBackbone):
    """The same model through the interface's default (chunks of the plain loop, no prefix
    sharing): what a backbone without a causal fast path gets."""

    def encode_text_embeddings(self, *args, **kwargs):
        return Backbone.encode_text_embeddings(self, *args, **kwargs)


def learner(backbone, ctx_init: str = "", class_specific: bool = False, seed: int = 0) -> PromptLearner:
    torch.manual_seed(seed)
    pl = PromptLearner(backbone, NAMES, n_ctx=4, ctx_init=ctx_init or None, class_specific=class_specific)
    with torch.no_grad():
        pl.ctx.normal_(0, 0.5)
    return pl


def features_and_grad(pl: PromptLearner, run) -> tuple[torch.Tensor, torch.Tensor]:
    pl.ctx.grad = None
    out = run()
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # a fixed, non-trivial loss
    (out * weights).sum().backward()
    return out.detach(), pl.ctx.grad.clone()


def full_77(backbone, pl: PromptLearner):
    """The reference computation: every prompt padded to 77 tokens, plain tower loop."""
    def run() -> torch.Tensor:
        emb, tokens = pl.embeddings(), pl.tokens
        pad = 77 - emb.shape[1]
        pad_ids = torch.full((len(tokens), pad), backbone.tokenizer.pad_token_id, dtype=torch.long)
        ids = torch.cat([tokens.ids, pad_ids], dim=1)
        mask = torch.cat([tokens.attention_mask, torch.zeros_like(pad_ids)], dim=1)
        emb = torch.cat([emb, backbone.embed_tokens(pad_ids)], dim=1)
        return backbone.encode_text_plain(emb, Tokens(ids, mask))
    return run


def test_prompt_length_is_real_not_77(backbone):
    pl = learner(backbone)
    assert pl.tokens.ids.shape[1] < 77
    assert pl.tokens.truncated().ids.shape[1] == int(pl.tokens.lengths.max())


@pytest.mark.parametrize("ctx_init", ["a photo of a", ""])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_fast_path_equals_full_77_tokens(backbone, ctx_init, share_prefix):
    pl = learner(backbone, ctx_init)
    ref, ref_grad = features_and_grad(pl, full_77(backbone, pl))
    pl.text_options = TextOptions(share_prefix=share_prefix)
    out, grad = features_and_grad(pl, pl)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(grad, ref_grad, atol=ATOL, rtol=1e-4)


def test_words_initialised_prompt_equals_library_encoder(backbone):
    """Initialised from "a photo of a", the fast path gives transformers' own text features."""
    torch.manual_seed(0)
    pl = PromptLearner(backbone, NAMES, ctx_init="a photo of a")
    texts = [f"a photo of a {n}." for n in NAMES]
    enc = backbone.tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        lib = backbone.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        lib = getattr(lib, "pooler_output", lib)
        ours = pl()
    torch.testing.assert_close(ours, lib, atol=ATOL, rtol=1e-4)


def test_prefix_is_used_and_helps(backbone, monkeypatch):
    """The shared-prefix path really runs: the per-class part is shorter than the prompt."""
    seen = []
    original = text_path._run_rest

    def spy(tower, per_block, rest, *args):
        seen.append(rest.shape[1])
        return original(tower, per_block, rest, *args)

    monkeypatch.setattr(text_path, "_run_rest", spy)
    pl = learner(backbone)
    pl()
    assert seen == [pl.tokens.ids.shape[1] - (1 + pl.n_ctx)]


def test_class_specific_context_gets_per_class_gradients(backbone):
    """Class-specific context starts equal for every class; it must not be treated as shared."""
    pl = learner(backbone, "a photo of a", class_specific=True)
    with torch.no_grad():
        pl.ctx.copy_(pl.ctx[:1].expand_as(pl.ctx))  # identical values, separate parameters
    ref, ref_grad = features_and_grad(pl, full_77(backbone, pl))
    out, grad = features_and_grad(pl, pl)
    torch.testing.assert_close(grad, ref_grad, atol=ATOL, rtol=1e-4)
    assert not torch.allclose(grad[0], grad[1])


@pytest.mark.parametrize("n_deep", [2, 6])  # inside the prefix, and reaching past it
@pytest.mark.parametrize("per_class", [False, True])
def test_deep_prompts_exact(backbone, n_deep, per_class):
    pl = learner(backbone)
    torch.manual_seed(1)
    shape = (len(NAMES), n_deep, backbone.text_width) if per_class else (n_deep, backbone.text_width)
    deep = [torch.randn(shape, requires_grad=True) for _ in range(backbone.text_layers - 1)]
    emb = pl.embeddings()
    ref = backbone.encode_text_plain(emb, pl.tokens, deep)
    ref_grads = torch.autograd.grad(ref.sum(), [pl.ctx, *deep])
    out = encode_prompts(backbone, pl.embeddings(), pl.tokens, deep, SharedPrefix(1 + pl.n_ctx))
    grads = torch.autograd.grad(out.sum(), [pl.ctx, *deep])
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-4)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_chunked_equals_unchunked(backbone, causal, chunk):
    bb = backbone if causal else NonCausal(backbone.model, backbone.tokenizer, "tiny-random")
    pl = learner(bb)
    ref, ref_grad = features_and_grad(pl, pl)
    pl.text_options = TextOptions(chunk=chunk)
    out, grad = features_and_grad(pl, pl)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(grad, ref_grad, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("chunk", [0, 2])
def test_gradient_checkpointing_equal_gradients(backbone, causal, chunk):
    bb = backbone if causal else NonCausal(backbone.model, backbone.tokenizer, "tiny-random")
    pl = learner(bb)
    ref, ref_grad = features_and_grad(pl, pl)
    pl.text_options = TextOptions(checkpoint=True, chunk=chunk)
    out, grad = features_and_grad(pl, pl)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(grad, ref_grad, atol=ATOL, rtol=1e-4)


def test_bf16_autocast_close_to_fp32(backbone):
    pl = learner(backbone)
    ref = pl().detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pl().float().detach()
    cos = torch.nn.functional.cosine_similarity(out, ref, dim=-1)
    assert cos.min() > 0.99


def test_options_are_explicit_per_method_and_validated(backbone):
    """Options live on the method that was given them (no global): a method built next to it
    keeps the defaults, and every prompt module of the method uses the method's."""
    from dvpt.methods.maple import MaPLe, MaPLeOptions

    chosen = TextOptions(chunk=7, checkpoint=True)
    method = MaPLe(backbone, NAMES, ["a photo of a {}."], MaPLeOptions()).set_text_options(chosen)
    users = [m for m in method.modules() if isinstance(getattr(m, "text_options", None), TextOptions)]
    assert len(users) >= 2 and all(m.text_options == chosen for m in users)
    assert learner(backbone).text_options == TextOptions()
    with pytest.raises(ConfigError, match="text.chunk"):
        TextOptions(chunk=-1)


def test_precision_choice_never_fp16_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", cpu)


@pytest.mark.parametrize("chunk, checkpoint", [(0, False), (2, False), (7, False), (10, False), (2, True)])
def test_cocoop_prefix_per_image_is_exact(backbone, chunk, checkpoint, monkeypatch):
    """CoCoOp's context is shifted per image: [start] + (v + pi(x)) is a prefix shared by the
    C prompts of one image. Sharing it per image gives the same logits and gradients as
    encoding every prompt whole, in any chunking."""
    from dvpt.methods.base import Batch
    from dvpt.methods.cocoop import CoCoOp, CoCoOpOptions

    torch.manual_seed(0)
    method = CoCoOp(backbone, NAMES, ["a photo of a {}."], CoCoOpOptions(n_ctx=4, ctx_init=""))
    with torch.no_grad():
        method.prompt_learner.ctx.normal_(0, 0.5)
    batch = Batch(labels=torch.tensor([0, 3, 4]), features=torch.randn(3, backbone.embed_dim))
    params = [method.prompt_learner.ctx, *method.meta_net.parameters()]

    def logits_and_grads():
        logits = method.logits(batch)
        return logits.detach(), torch.autograd.grad(torch.nn.functional.cross_entropy(logits, batch.labels), params)

    method.set_text_options(TextOptions(share_prefix=False))
    ref, ref_grads = logits_and_grads()
    method.set_text_options(TextOptions(chunk=chunk, checkpoint=checkpoint))  # chunks: all; in a group; 1; 2 groups
    out, grads = logits_and_grads()
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-4)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)

    passes = []  # (rows, tokens) of each pass after the prefixes, in a forward without recompute
    original = text_path._run_rest
    monkeypatch.setattr(text_path, "_run_rest", lambda tower, per_block, rest, *a:
                        passes.append(tuple(rest.shape[:2])) or original(tower, per_block, rest, *a))
    method.set_text_options(TextOptions(chunk=chunk))
    with torch.no_grad():
        method.logits(batch)
    prompt_length = method.prompt_learner.tokens.truncated().ids.shape[1]
    assert {tokens for _, tokens in passes} == {prompt_length - 5}  # [start] + 4 context: once per image
    expected_rows = {0: [15], 2: [2, 2, 1] * 3, 7: [5, 5, 5], 10: [10, 5]}[chunk]
    assert [rows for rows, _ in passes] == expected_rows


def test_prefix_groups_must_divide_the_prompts(backbone):
    pl = learner(backbone)
    with pytest.raises(ValueError, match="5 prompts cannot form 2 equal prefix groups"):
        encode_prompts(backbone, pl.embeddings(), pl.tokens, prefix=SharedPrefix(5, 2))
