"""Details of the official code the paper specs follow: ProGrad's word-count initialisation,
its fp32 teacher, and zero-shot CLIP's template ensemble on ImageNet (CoOp's ZeroshotCLIP2).

ProGrad's rule is applied here as its prompt learner applies it (``ctx_init`` is the template
less " {}.", ``n = len(ctx_init.split(" "))``, the prompt ``"X " * (16 - n) + ctx_init +
" " + name + "."``, the first ``n`` tokens of ``ctx_init`` copied), with CLIP's real BPE
tokenizer (open_clip's, on ``openclip-tiny-random``), and the method must produce exactly
those prompts.
"""
from __future__ import annotations

import pytest
import torch

from dvpt.config.loader import from_dict
from dvpt.config.schema import RunConfig
from dvpt.data.templates import ENSEMBLE_TEMPLATES, dataset_templates
from dvpt.engine.session import Session
from dvpt.errors import ConfigError
from dvpt.methods import get_method
from dvpt.methods.base import Batch
from dvpt.prompts.handcrafted import handcrafted_features

pytest.importorskip("open_clip", reason="the [openclip] extra (CLIP's BPE tokenizer) is not installed")

CLASSES = ["abyssinian", "great_pyrenees", "english cocker spaniel"]
#: CoOp's custom templates of the datasets where words and BPE tokens differ, and two where not
PETS, FOOD, FLOWERS = "a photo of a {}, a type of pet.", "a photo of {}, a type of food.", "a photo of a {}, a type of flower."
IMAGENET, EUROSAT = "a photo of a {}.", "a centered satellite photo of {}."


@pytest.fixture(scope="module")
def clip_bpe():
    from dvpt.backbones import load_backbone

    return load_backbone("openclip-tiny-random")


def prograd(backbone, template: str, classes=CLASSES, **options):
    cls = get_method("prograd")
    torch.manual_seed(0)
    return cls(backbone, classes, [template], from_dict(cls.Options, options)).eval()


def official_prompt_ids(backbone, prograd_template: str, classes, n_ctx: int = 16) -> tuple[torch.Tensor, int, str]:
    """ProGrad.public trainers/prograd.py PromptLearner, with ``ctx_init`` from its template table."""
    ctx_init = prograd_template.replace(" {}.", "").replace("_", " ")
    n_words = len(ctx_init.split(" "))
    prefix = " ".join(["X"] * (n_ctx - n_words)) + " " + ctx_init
    prompts = [prefix + " " + name.replace("_", " ") + "." for name in classes]
    return backbone.tokenize(prompts).ids, n_words, ctx_init


@pytest.mark.parametrize("template, prograd_template", [
    (PETS, "a type of pet, a photo of a {}."),
    (FOOD, "a type of food, a photo of {}."),
    (FLOWERS, "a type of flower, a photo of a {}."),
    (IMAGENET, IMAGENET),
    (EUROSAT, EUROSAT),
])
def test_counted_words_give_the_official_prompts(clip_bpe, template: str, prograd_template: str) -> None:
    method = prograd(clip_bpe, template, count_words=True)
    learner = method.prompt_learner
    assert method.template == prograd_template
    ids, n_words, ctx_init = official_prompt_ids(clip_bpe, prograd_template, CLASSES)
    n_bpe = int(clip_bpe.tokenize([ctx_init]).lengths[0]) - 2
    assert torch.equal(learner.tokens.ids, ids)  # token for token the official prompts
    assert learner.n_ctx == 16
    ctx = learner.ctx.detach()
    # zero-initialised leading tokens, then the first n_words tokens of ctx_init (learnable)
    assert torch.count_nonzero(ctx[: 16 - n_words]) == 0
    init_ids = clip_bpe.tokenize([ctx_init]).ids[0, 1 : 1 + n_words]
    torch.testing.assert_close(ctx[16 - n_words:], clip_bpe.embed_tokens(init_ids[None])[0].float(), rtol=0, atol=0)
    # the fixed part after the context: the tokens of ctx_init the word count left out
    fixed = ids[0, 1 + 16 : 1 + 16 + (n_bpe - n_words)]
    assert torch.equal(fixed, clip_bpe.tokenize([ctx_init]).ids[0, 1 + n_words : 1 + n_bpe])
    # the whole embedded prompt: the official embedding with the placeholders zeroed
    expected = clip_bpe.embed_tokens(ids).float()
    expected[:, 1 : 1 + 16 - n_words] = 0
    torch.testing.assert_close(learner.embeddings().detach(), expected, rtol=0, atol=0)
    if "," in ctx_init:  # a comma is its own BPE token: the template keeps a fixed token
        assert n_bpe > n_words
    else:
        assert n_bpe == n_words


@pytest.mark.parametrize("template", [PETS, FOOD])
def test_counting_tokens_keeps_no_fixed_template_token(clip_bpe, template: str) -> None:
    """The default (BPE count) makes every template token learnable: no fixed part."""
    method = prograd(clip_bpe, template)
    ctx_init = method.template.replace(" {}.", "")
    n_bpe = int(clip_bpe.tokenize([ctx_init]).lengths[0]) - 2
    first = clip_bpe.tokenize([method.template.format(CLASSES[0].replace("_", " "))]).ids[0]
    suffix_ids = method.prompt_learner.tokens.ids[0, 1 + 16:]
    assert torch.equal(suffix_ids[: len(first) - 1 - n_bpe], first[1 + n_bpe:])  # class name right after ctx


def test_counted_words_follow_a_new_template(clip_bpe) -> None:
    """Trained on ImageNet, evaluated on Pets: the official prompt learner for the target
    dataset has Pets' fixed token; the learned context is kept."""
    method = prograd(clip_bpe, IMAGENET, count_words=True)
    with torch.no_grad():
        method.prompt_learner.ctx.add_(0.5)
    learned = method.prompt_learner.ctx.detach().clone()
    method.set_classnames(CLASSES[:2], [PETS])
    ids, _, _ = official_prompt_ids(clip_bpe, "a type of pet, a photo of a {}.", CLASSES[:2])
    assert torch.equal(method.prompt_learner.tokens.ids, ids)
    assert torch.equal(method.prompt_learner.ctx.detach(), learned)
    assert torch.isfinite(method.classifier()).all()


def test_too_many_words_for_the_context_is_a_config_error(clip_bpe) -> None:
    with pytest.raises(ConfigError, match="n_ctx"):
        prograd(clip_bpe, PETS, count_words=True, n_ctx=4)


# ---- ProGrad's fp32 teacher ------------------------------------------------------------
def test_fp32_teacher_under_low_precision_autocast(clip_bpe) -> None:
    """Under a bf16 autocast (the CPU's low precision), the fp32 teacher's logits equal the
    teacher computed with autocast off, from the images themselves; the default teacher
    (the run's precision) does not."""
    from dvpt.prompts.handcrafted import clear_cache

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, clip_bpe.image_size, clip_bpe.image_size, generator=gen)
    batch = Batch(labels=torch.tensor([0, 1, 2, 0]), images=images)
    exact_method = prograd(clip_bpe, PETS, fp32_teacher=True)
    with torch.no_grad():
        reference = exact_method.zero_shot_logits(exact_method.image_features(batch), batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = exact_method.image_features(batch)
            exact = exact_method.zero_shot_logits(low, batch)
            plain_method = prograd(clip_bpe, PETS)
            plain = plain_method.zero_shot_logits(plain_method.image_features(batch), batch)
    clear_cache()
    assert exact.dtype == torch.float32
    torch.testing.assert_close(exact, reference, rtol=0, atol=0)
    assert not torch.allclose(plain.float(), reference, rtol=0, atol=1e-4)


def test_handcrafted_cache_keeps_precisions_apart(clip_bpe) -> None:
    from dvpt.prompts.handcrafted import clear_cache

    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = handcrafted_features(clip_bpe, CLASSES, [PETS])
    full = handcrafted_features(clip_bpe, CLASSES, [PETS])
    clear_cache()
    reference = handcrafted_features(clip_bpe, CLASSES, [PETS])
    clear_cache()
    torch.testing.assert_close(full, reference, rtol=0, atol=0)
    assert not torch.equal(low, full)


# ---- zero-shot CLIP's ensemble ----------------------------------------------------------
@pytest.mark.parametrize("dataset, expected", [
    ("imagenet", list(ENSEMBLE_TEMPLATES)),  # ZeroshotCLIP2: the 7 select templates alone
    ("imagenet_sketch", list(dataset_templates("imagenet_sketch"))),  # variants keep the custom one
    ("oxford_pets", list(dataset_templates("oxford_pets"))),  # the custom one added
])
def test_zeroshot_ensemble_follows_the_dataset_of_the_config(dataset: str, expected: list[str]) -> None:
    """The dataset name reaches the method from the run's config through the session."""
    cfg = from_dict(RunConfig, {"method": "zeroshot", "backbone": "tiny-random", "device": "cpu",
                                "data": {"dataset": dataset}, "options": {"templates": "ensemble"}})
    session = Session(cfg)
    method = session.build_method(CLASSES, dataset_templates(dataset))
    assert method.dataset == dataset
    assert len(expected) == (7 if dataset == "imagenet" else 8)
    want = handcrafted_features(session.backbone, CLASSES, expected)
    torch.testing.assert_close(method.classifier(), want, rtol=0, atol=0)
    single = from_dict(RunConfig, {"method": "zeroshot", "backbone": "tiny-random", "device": "cpu",
                                   "data": {"dataset": dataset}, "options": {"templates": "dataset"}})
    method = Session(single).build_method(CLASSES, dataset_templates(dataset))
    want = handcrafted_features(session.backbone, CLASSES, dataset_templates(dataset)[:1])
    torch.testing.assert_close(method.classifier(), want, rtol=0, atol=0)
