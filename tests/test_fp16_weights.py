"""``precision: fp16-weights``, the official code's pure fp16, on the CPU with tiny-random.

The official trainers run CLIP as OpenAI's ``clip.build_model`` leaves it: ``convert_weights``
casts the weights and biases of every linear and convolution layer to fp16, everything else
stays fp32; the learnable parts created from ``clip_model.dtype`` are fp16, the ones created
with torch's defaults fp32; no autocast and no loss scaling. The tests check those dtypes
against the rule applied here, a training step against the same step in fp32, and ProGrad's
fp32 teacher against an fp32 model holding the same (fp16-rounded) weights.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dvpt.backbones import load_backbone
from dvpt.backbones.hf_clip import HFCLIPBackbone
from dvpt.config.loader import build_config
from dvpt.config.schema import OptimConfig
from dvpt.engine.device import autocast, grad_scaler, resolve_precision
from dvpt.engine.session import Session
from dvpt.engine.trainer import Trainer
from dvpt.errors import ConfigError
from dvpt.methods.base import Batch

CLASSES = ["cat", "dog", "bird", "fish"]
#: logits differ from fp32 by the rounding of fp16 weights and activations (fp16 keeps about
#: 3 decimal digits; tiny-random's logit scale is 14.3, so 0.05 is 3.5e-3 in cosine)
LOGIT_TOL = 0.05


def half_session(method: str, options: dict | None = None, precision: str = "fp16-weights") -> Session:
    cfg = build_config(method=method, flags={"backbone": "tiny-random", "precision": precision, "device": "cpu",
                                             "options": options or {}})
    return Session(cfg)


def test_backbone_casts_exactly_what_clip_convert_weights_casts() -> None:
    half = load_backbone("tiny-random", "cpu", half=True)
    plain = load_backbone("tiny-random", "cpu")
    assert half is not plain and half.dtype == torch.float16 and plain.dtype == torch.float32
    # the rule of OpenAI's convert_weights, applied to the module tree here
    expected = {}
    for name, module in half.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            converted = isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d))
            expected[f"{name}.{pname}" if name else pname] = torch.float16 if converted else torch.float32
    got = {name: p.dtype for name, p in half.named_parameters()}
    assert got == expected
    assert sum(d == torch.float16 for d in got.values()) > 20 and sum(d == torch.float32 for d in got.values()) > 10
    model = half.model
    assert model.text_projection.weight.dtype == model.visual_projection.weight.dtype == torch.float16
    assert model.vision_model.embeddings.patch_embedding.weight.dtype == torch.float16
    for kept in (model.text_model.embeddings.token_embedding.weight, model.text_model.embeddings.position_embedding.weight,
                 model.vision_model.embeddings.class_embedding, model.text_model.final_layer_norm.weight,
                 model.logit_scale):
        assert kept.dtype == torch.float32
    # the everyday backbone of the same name is untouched, and its weights round to the half ones
    assert {p.dtype for p in plain.parameters()} == {torch.float32}
    for (name, p16), p32 in zip(half.named_parameters(), plain.parameters()):
        assert torch.equal(p16, p32.to(p16.dtype)), name


@pytest.mark.parametrize("method, fp16", [
    ("coop", {"prompt_learner.ctx"}),
    ("kgcoop", {"prompt_learner.ctx"}),
    ("prograd", {"prompt_learner.ctx"}),
    ("dvpt", {"prompt_learner.ctx"}),
    # CoOp trainers/cocoop.py: self.meta_net.half() under PREC fp16
    ("cocoop", {"prompt_learner.ctx", "meta_net.0.weight", "meta_net.0.bias", "meta_net.2.weight", "meta_net.2.bias"}),
    # MaPLe trainers/maple.py: ctx from the fp16 embedding, self.proj.half(); deep prompts and
    # their couplers are created fp32
    ("maple", {"text_prompts.ctx", "couplers.0.weight", "couplers.0.bias"}),
    # PromptSRC: ctx from the fp16 embedding; VPT_shallow prompts (text and image) created fp32
    ("promptsrc", {"prompts.text.ctx"}),
])
def test_learnable_parts_have_the_official_dtypes(method: str, fp16: set[str]) -> None:
    built = half_session(method).build_method(CLASSES, ["a photo of a {}."])
    dtypes = {name: p.dtype for name, p in built.named_parameters()}
    assert {n for n, d in dtypes.items() if d == torch.float16} == fp16
    assert {d for n, d in dtypes.items() if n not in fp16} <= {torch.float32}
    if method in ("maple", "promptsrc"):
        assert len(dtypes) > len(fp16)  # there are fp32 deep prompts beside the fp16 context


def test_fp16_weights_runs_without_autocast_or_loss_scaling_on_the_cpu() -> None:
    from typing import get_args, get_type_hints

    from dvpt.config.schema import RunConfig
    from dvpt.engine.device import PRECISIONS

    assert get_args(get_type_hints(RunConfig)["precision"]) == PRECISIONS  # the schema and the device agree
    device = torch.device("cpu")
    assert resolve_precision("fp16-weights", device) == "fp16-weights"
    assert grad_scaler(device, "fp16-weights") is None
    with autocast(device, "fp16-weights"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ConfigError, match="fp16-weights"):
        resolve_precision("fp16", device)  # fp16 autocast stays refused on the CPU


class OneBatch:
    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return 1

    def epoch(self, epoch: int):
        yield self.batch


@pytest.mark.parametrize("method", ["coop", "maple", "promptsrc"])
def test_a_training_step_in_fp16_weights_stays_within_tolerance_of_fp32(method: str) -> None:
    """The same init, the same batch, one SGD step through the trainer: the logits of a fixed
    input before and after agree with the fp32 run within LOGIT_TOL, while the step itself
    moves them far more than that; the frozen weights stay bit for bit what they were."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=gen)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    probe = Batch(torch.zeros(5, dtype=torch.long), images=torch.randn(5, 3, 32, 32, generator=gen))
    optim = OptimConfig(epochs=1, lr=0.05, batch_size=8, warmup_epochs=0)
    runs = {}
    for precision in ("fp32", "fp16-weights"):
        session = half_session(method, precision=precision)
        built = session.build_method(CLASSES, ["a photo of a {}."])
        frozen = {n: p.clone() for n, p in session.backbone.named_parameters()}
        with torch.no_grad():
            before = built.logits(probe).float()
        Trainer(built, OneBatch(Batch(labels, images=images)), optim, torch.device("cpu"), 1, session.precision).fit()
        with torch.no_grad():
            after = built.logits(probe).float()
        assert all(torch.equal(frozen[n], p) for n, p in session.backbone.named_parameters())
        runs[precision] = (before, after, built)
    (b32, a32, m32), (b16, a16, m16) = runs["fp32"], runs["fp16-weights"]
    assert (b16 - b32).abs().max() < LOGIT_TOL and (a16 - a32).abs().max() < LOGIT_TOL
    assert (a32 - b32).abs().max() > 5 * LOGIT_TOL  # the step did something the tolerance would see
    ctx = dict(m16.named_parameters())
    assert next(p for n, p in ctx.items() if n.endswith("ctx")).dtype == torch.float16  # updated in fp16


def test_prograd_fp32_teacher_on_half_weights_is_clip_cast_to_float() -> None:
    """With fp32_teacher the teacher sees the half weights in fp32 (the official
    ``clip_model.float()``): equal to an fp32 model whose weights are rounded to fp16, and the
    half weights come back bit for bit."""
    session = half_session("prograd", {"fp32_teacher": True})
    method = session.build_method(CLASSES, ["a photo of a {}."])
    half = session.backbone
    reference = HFCLIPBackbone.tiny_random().freeze()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                for p in (module.weight, module.bias):
                    if p is not None:
                        p.copy_(p.half().float())
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    weights = {n: p.clone() for n, p in half.named_parameters()}
    feats = torch.nn.functional.normalize(torch.randn(3, half.embed_dim), dim=-1)
    teacher = method.zero_shot_logits(feats, Batch(torch.zeros(3, dtype=torch.long), images=images))
    assert all(torch.equal(weights[n], p) and p.dtype == weights[n].dtype for n, p in half.named_parameters())
    assert half.dtype == torch.float16
    with torch.no_grad():
        text = torch.nn.functional.normalize(reference.encode_text([f"a photo of a {c}." for c in CLASSES]), dim=-1)
        image = torch.nn.functional.normalize(reference.encode_image(images), dim=-1)
    expected = reference.logit_scale * image @ text.t()
    assert teacher.dtype == torch.float32
    torch.testing.assert_close(teacher, expected, rtol=1e-5, atol=1e-4)
    # without fp32_teacher the teacher is the fp16 model's: visibly different from fp32's
    plain = half_session("prograd", {"fp32_teacher": False}).build_method(CLASSES, ["a photo of a {}."])
    low = plain.zero_shot_logits(image, None)
    assert not torch.allclose(low.float(), expected, rtol=1e-5, atol=1e-4)


def test_fp16_weights_is_refused_with_a_backbone_that_does_not_support_it() -> None:
    with pytest.raises(ConfigError, match=r"fp16-weights .*'micro'.*use precision fp16 \(autocast\) or fp32"):
        Session(build_config(method="coop", flags={"backbone": "micro", "precision": "fp16-weights", "device": "cpu"}))
