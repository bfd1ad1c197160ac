"""dvpt: gradients, frozen backbone, the proto path on novel classes, CoOp equivalence, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dvpt.backbones import load_backbone
from dvpt.cli import main
from dvpt.config import build_config
from dvpt.engine.checkpoint import load_learnable, save_learnable
from dvpt.engine.session import Session
from dvpt.errors import ConfigError
from dvpt.methods.base import Batch, StepContext
from dvpt.methods.dvpt import DVPT, DVPTOptions
from dvpt.prompts.visual_aug import bound_shift

from conftest import first_step

CLASSES = ["red", "green", "blue", "yellow", "purple", "orange"]
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30), (150, 40, 160), (250, 140, 20)]
PLAIN = {"mi": "none", "visual_aug": "none", "infer": "soft"}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("DVPT_NO_PROGRESS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)  # never leak the thread count into later test files


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory) -> Path:
    """A 6-class image folder: noisy patches of one colour per class (20 images each)."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for name, rgb in zip(CLASSES, COLOURS):
        (root / name).mkdir()
        for i in range(20):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("tiny-random", "cpu")


def make(backbone, classnames=CLASSES[:3], **options) -> DVPT:
    """A dvpt on the tiny backbone; soft inference unless asked (the views are compared apart)."""
    options.setdefault("infer", "soft")
    torch.manual_seed(0)
    return DVPT(backbone, classnames, ["a photo of a {}.", "a drawing of a {}."], DVPTOptions(**options))


def feature_batch(backbone, n=12, classes=3, seed=0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    return Batch(labels=torch.arange(n) % classes, features=torch.randn(n, backbone.embed_dim, generator=gen))


def config(root: Path, method: str, protocol: str = "all", epochs: int = 2, options: dict | None = None):
    flags = {"method": method, "backbone": "tiny-random", "protocol": protocol, "threads": 1,
             "data": {"dataset": "folder", "root": str(root), "shots": 4},
             "optim": {"epochs": epochs, "batch_size": 4, "lr": 0.05}, "options": options or {}}
    return build_config(method=method, flags=flags)


# ---- options -----------------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("mi", "mine"), ("visual_aug", "cutmix"), ("infer", "both"),
                                       ("handcrafted", "all"), ("proto_eval", "image")])
def test_unknown_choice_is_a_config_error_naming_the_key(backbone, key, value):
    with pytest.raises(ConfigError, match=f"options.{key}"):
        make(backbone, **{key: value})


def test_preset_is_valid_and_names_every_option():
    cfg = build_config(method="dvpt")
    assert set(cfg.options) == {f for f in DVPTOptions.__dataclass_fields__}


# ---- gradients and the frozen backbone ----------------------------------------------------
@pytest.mark.parametrize("options", [
    {"mi": "infonce", "visual_aug": "proto"},
    {"mi": "infonce", "visual_aug": "proto", "proto_max_ratio": 0.25},
    {"mi": "iic", "visual_aug": "mixup"},
])
def test_only_learnable_parameters_receive_gradients(backbone, options):
    method = make(backbone, **options)
    if method.proto is not None:  # a zero last layer would give the first layer zero gradients
        torch.nn.init.normal_(method.proto.net[2].weight, std=0.01)
    losses = method.losses(feature_batch(backbone), first_step())
    assert torch.isfinite(losses["loss"]) and {"ce", "mi", "aug"} <= set(losses)
    losses["loss"].backward()
    owned = dict(method.named_parameters())
    assert owned and all(p.grad is not None and p.grad.abs().sum() > 0 for p in owned.values()), \
        [k for k, p in owned.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    assert not any(k.startswith("_backbone") for k in method.state_dict())


def test_frozen_backbone_is_bit_identical_after_training(colour_root, backbone):
    cfg = config(colour_root, "dvpt", options={"mi": "iic", "visual_aug": "proto"})
    session = Session(cfg)
    before = {k: v.clone() for k, v in session.backbone.state_dict().items()}
    splits = session.few_shot(session.load_dataset())
    method = session.build_method(splits.classnames, splits.templates)
    ctx0 = method.prompt_learner.ctx.detach().clone()
    history = session.train(method, splits.train)
    assert len(history) == 2 and not torch.equal(ctx0, method.prompt_learner.ctx)
    after = session.backbone.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# ---- the proto path --------------------------------------------------------------------
def trained_proto(backbone, **options) -> DVPT:
    method = make(backbone, visual_aug="proto", **options)
    torch.nn.init.normal_(method.proto.net[2].weight, std=0.05)  # as if trained: h != 0
    method.losses(feature_batch(backbone), first_step())  # fills the prototype bank of the 3 base classes
    return method.eval()


def test_proto_classifies_novel_classes_from_text_proxies(backbone):
    method = trained_proto(backbone)
    novel = CLASSES[3:]
    method.set_classnames(novel)
    with torch.no_grad():
        text = method.classifier()
        hand = method.hand_features()
        expected = method.soft_features(method.proto(hand))  # design: e_c = t^h_c for classes without images
        unshifted = method.soft_features()
        logits = method.logits(feature_batch(backbone, n=5, classes=3), text)
    assert text.shape == (3, backbone.embed_dim) and logits.shape == (5, 3)
    assert torch.isfinite(logits).all()
    assert torch.allclose(text, expected, atol=1e-6)
    assert not torch.allclose(text, unshifted, atol=1e-4)  # the shift is class-specific and non-zero


def test_proto_uses_visual_prototypes_for_trained_classes(backbone):
    bank = trained_proto(backbone, proto_eval="bank")
    with torch.no_grad():
        protos = bank.proto.prototypes()
        assert torch.allclose(bank.classifier(), bank.soft_features(bank.proto(protos)), atol=1e-6)
        # mixed class lists: a trained class keeps its prototype, a new one gets its proxy
        bank.set_classnames([CLASSES[1], CLASSES[4]])
        emb = bank.proto.eval_embeddings(bank.classnames, bank.hand_features(), use_bank=True)
        assert torch.equal(emb[0], protos[1]) and torch.equal(emb[1], bank.hand_features()[1])
    proxy = trained_proto(backbone, proto_eval="proxy")
    with torch.no_grad():
        assert torch.allclose(proxy.classifier(), proxy.soft_features(proxy.proto(proxy.hand_features())), atol=1e-6)


def test_proto_starts_as_coop(backbone):
    """Zero-initialised last layer: before training the class-specific prompts are CoOp's."""
    method = make(backbone, visual_aug="proto", mi="none")
    with torch.no_grad():
        # equal up to float rounding: without a shift the learner takes its shared-prefix path
        assert torch.allclose(method.classifier(), method.soft_features(), atol=1e-6)


def test_bounded_shift_never_exceeds_ratio_times_context_norm(backbone):
    """|b(h(e))| < r * mean_m |v_m| for any embedding and any (even huge) network output."""
    method = trained_proto(backbone, proto_max_ratio=0.3)
    torch.nn.init.normal_(method.proto.net[2].weight, std=50.0)  # raw shifts far beyond the context
    v_norm = method.prompt_learner.ctx.detach().norm(dim=-1).mean()
    emb = 100 * torch.randn(64, backbone.embed_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = method.proto(emb)
        bounded = method.proto(emb, method.shift_limit())
    assert float(raw.norm(dim=-1).min()) > 10 * float(0.3 * v_norm)  # the bound is what holds them
    assert float(bounded.norm(dim=-1).max()) <= float(0.3 * v_norm) * (1 + 1e-5)
    assert torch.allclose(F.normalize(bounded, dim=-1), F.normalize(raw, dim=-1), atol=1e-5)  # direction kept
    small = 1e-4 * raw / raw.norm(dim=-1, keepdim=True)  # tanh(x) ~ x: small shifts pass unchanged
    assert torch.allclose(bound_shift(small, 0.3 * v_norm), small, rtol=1e-4, atol=0)
    with torch.no_grad():  # and the classifier uses the bounded shift
        protos = method.proto.prototypes()
        expected = method.soft_features(bound_shift(method.proto.net(protos), 0.3 * v_norm))
        assert torch.allclose(method.classifier(), expected, atol=1e-6)
        assert not torch.allclose(method.classifier(), method.soft_features(method.proto.net(protos)), atol=1e-3)


def test_unbounded_shift_option_is_the_plain_network_bit_for_bit(backbone):
    """proto_max_ratio 0 (the off value) computes exactly what dvpt computed before the option."""
    method = trained_proto(backbone)
    assert method.options.proto_max_ratio == 0.0 and method.shift_limit() is None
    batch = feature_batch(backbone, seed=3)
    with torch.no_grad():
        protos = method.proto.prototypes()
        assert torch.equal(method.classifier(), method.soft_features(method.proto.net(protos)))
        method.train()
        losses = method.losses(batch, first_step())  # adds the batch to the bank, then draws proxies
        hand, protos = method.hand_features(), method.proto.prototypes()
        # the same draws again (a fresh stream of the same epoch), against the bank losses() used
        emb, seen = method.proto.train_embeddings(hand, 0.5, first_step().generator)
        soft = method.soft_features(method.proto.net(emb))
        logits = method.logit_scale * method.image_features(batch) @ soft.t()
        aug = (method.proto.net(protos[seen]) - method.proto.net(hand[seen])).pow(2).sum(-1).mean()
    assert torch.equal(losses["ce"], torch.nn.functional.cross_entropy(logits.float(), batch.labels))
    assert torch.equal(losses["aug"], aug)
    with pytest.raises(ConfigError, match="options.proto_max_ratio"):
        make(backbone, visual_aug="proto", proto_max_ratio=-1.0)


def test_ensemble_inference_is_the_weighted_sum_of_view_logits(backbone):
    method = make(backbone, visual_aug="none", infer="ensemble", ensemble_weight=0.3).eval()
    method.prompt_learner.ctx.data += 0.1 * torch.randn_like(method.prompt_learner.ctx)  # views differ
    batch = feature_batch(backbone)
    with torch.no_grad():
        feats = method.image_features(batch)
        soft = method.logit_scale * feats @ method.soft_features().t()
        hand = method.logit_scale * feats @ method.hand_features().t()
        assert not torch.allclose(soft, hand, atol=1e-3)
        assert torch.allclose(method.logits(batch), 0.7 * soft + 0.3 * hand, atol=1e-5)


def test_checkpoint_round_trip_keeps_bank_and_net(backbone, tmp_path):
    method = trained_proto(backbone)
    save_learnable(method, tmp_path / "m.safetensors")
    fresh = make(backbone, visual_aug="proto").eval()
    load_learnable(fresh, tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh.classifier(), method.classifier())
    assert "proto.proto_sum" in method.state_dict()
    assert "epochs_done" not in method.state_dict()  # where training stands is the engine's (StepContext)
    assert not any("hand" in k or "token_" in k for k in method.state_dict())  # caches are not saved


def test_mixup_loss_is_finite_and_reproducible_per_epoch(backbone):
    method = make(backbone, visual_aug="mixup", mi="none")
    batch = feature_batch(backbone)
    first = method.losses(batch, StepContext.for_epoch(1, 0, 2))["aug"]
    assert torch.isfinite(first) and float(first) > 0
    # the same (seed, epoch): the same draws; the next epoch, or another seed: other draws
    assert float(method.losses(batch, StepContext.for_epoch(1, 0, 2))["aug"]) == float(first)
    assert float(method.losses(batch, StepContext.for_epoch(1, 1, 2))["aug"]) != pytest.approx(float(first))
    assert float(method.losses(batch, StepContext.for_epoch(2, 0, 2))["aug"]) != pytest.approx(float(first))


# ---- CoOp equivalence ------------------------------------------------------------------
def train_classifier(root: Path, method: str, options: dict | None = None) -> torch.Tensor:
    session = Session(config(root, method, options=options))
    splits = session.few_shot(session.load_dataset())
    model = session.build_method(splits.classnames, splits.templates)
    session.train(model, splits.train)
    with torch.no_grad():
        return model.classifier()


@pytest.mark.parametrize("ctx_init", ["a photo of a", ""])
def test_plain_dvpt_gives_exactly_coops_classifier(colour_root, ctx_init):
    coop = train_classifier(colour_root, "coop", {"ctx_init": ctx_init})
    plain = train_classifier(colour_root, "dvpt", PLAIN | {"ctx_init": ctx_init})
    assert torch.equal(coop, plain)
    full = train_classifier(colour_root, "dvpt", {"ctx_init": ctx_init, "mi": "infonce", "visual_aug": "none"})
    assert not torch.equal(coop, full)  # the MI term changes training


# ---- command line ------------------------------------------------------------------------
@pytest.mark.parametrize("protocol,options", [
    ("base2novel", []),
    ("all", ["--set", "options.mi=iic", "--set", "options.visual_aug=mixup", "--set", "options.infer=ensemble"]),
])
def test_cli_train_dvpt(colour_root, tmp_path, protocol, options):
    out = tmp_path / protocol
    argv = ["train", "--method", "dvpt", "--backbone", "tiny-random", "--dataset", "folder", "--root",
            str(colour_root), "--shots", "4", "--epochs", "2", "--batch-size", "4", "--threads", "1",
            "--protocol", protocol, "-o", str(out), *options]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "dvpt" and len(metrics["history"]) == 2
    keys = ("base", "novel", "hm") if protocol == "base2novel" else ("accuracy",)
    assert all(0 <= metrics[k] <= 100 for k in keys)
    assert (out / "checkpoint" / "learnable.safetensors").is_file()


def test_cli_rejects_bad_option(colour_root, tmp_path, capsys):
    argv = ["train", "--method", "dvpt", "--backbone", "tiny-random", "--dataset", "folder", "--root",
            str(colour_root), "--set", "options.mi=mine", "-o", str(tmp_path / "bad")]
    assert main(argv) == 2
    assert "options.mi" in capsys.readouterr().err and not (tmp_path / "bad").exists()


MICRO = Path(__file__).resolve().parents[1] / "src" / "dvpt" / "assets" / "micro.safetensors"


@pytest.mark.skipif(not MICRO.is_file(), reason="micro weights not built yet (src/dvpt/assets/micro.safetensors)")
def test_cli_train_dvpt_on_micro(colour_root, tmp_path):
    out = tmp_path / "micro"
    argv = ["train", "--method", "dvpt", "--backbone", "micro", "--dataset", "folder", "--root",
            str(colour_root), "--shots", "4", "--epochs", "1", "--threads", "1", "--protocol", "base2novel",
            "-o", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["hm"] <= 100


# ---- the ablation ------------------------------------------------------------------------
def test_ablation_summary_means_spreads_and_average_hm():
    from dvpt.experiments.ablation import summarise

    records = [
        {"row": "r", "dataset": "a", "seed": 1, "base": 80.0, "novel": 60.0, "hm": 2 * 80 * 60 / 140},
        {"row": "r", "dataset": "a", "seed": 2, "base": 90.0, "novel": 50.0, "hm": 2 * 90 * 50 / 140},
        {"row": "r", "dataset": "b", "seed": 1, "base": 70.0, "novel": 70.0, "hm": 70.0},
        {"row": "r", "dataset": "b", "seed": 2, "base": 70.0, "novel": 70.0, "hm": 70.0},
    ]
    table = summarise(records, ["r"], ["a", "b"])["r"]
    assert table["a"]["base"] == pytest.approx((85.0, 7.0710678)) and table["b"]["hm"] == (70.0, 0.0)
    assert table["average"]["base"][0] == pytest.approx(77.5) and table["average"]["novel"][0] == pytest.approx(62.5)
    assert table["average"]["hm"][0] == pytest.approx(2 * 77.5 * 62.5 / 140)  # HM of the averages


def test_cli_ablate_writes_run_folders_and_table(colour_root, tmp_path, capsys):
    out = tmp_path / "abl"
    argv = ["ablate", "--backbone", "tiny-random", "--datasets", "folder", "--seeds", "1",
            "--rows", "ce-only-coop,coop", "--threads", "1", "-o", str(out), "--set", f"data.root={colour_root}",
            "--set", "data.shots=4", "--set", "optim.epochs=1", "--set", "optim.batch_size=4"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    coop, plain = (json.loads((out / r / "folder" / "seed1" / "metrics.json").read_text()) for r in ("coop", "ce-only-coop"))
    assert coop["method"] == "coop" and plain["method"] == "dvpt"
    assert (coop["base"], coop["novel"]) == (plain["base"], plain["novel"])  # CE only is CoOp
    assert "| CoOp |" in table and (out / "table.md").read_text() == table


# ---- feature: virtual features around prototypes (training only) -------------------------
def test_feature_bank_covariance_matches_numpy_pooled_within_class():
    from dvpt.prompts.visual_aug import FeatureBank

    gen = torch.Generator().manual_seed(3)
    feats = F.normalize(torch.randn(12, 5, generator=gen), dim=-1)
    labels = torch.arange(12) % 3
    bank = FeatureBank(5, 4)  # class 3 never seen
    bank.observe(feats[:6], labels[:6])
    bank.observe(feats[6:], labels[6:])
    x = feats.double().numpy()
    dev = np.concatenate([x[labels.numpy() == c] - x[labels.numpy() == c].mean(0) for c in range(3)])
    ref = dev.T @ dev / (12 - 3)
    assert np.allclose(bank.covariance(0.0).numpy(), ref, atol=1e-10)
    iso = np.eye(5) * np.trace(ref) / 5
    assert np.allclose(bank.covariance(0.3).numpy(), 0.7 * ref + 0.3 * iso, atol=1e-10)
    x_v, y_v = bank.sample(2, 0.5, torch.Generator().manual_seed(0))
    assert y_v.tolist() == [0, 0, 1, 1, 2, 2]  # only seen classes get virtual features
    assert torch.allclose(x_v.norm(dim=-1), torch.ones(6, dtype=x_v.dtype))


def test_feature_aug_at_zero_strength_trains_exactly_like_coop(colour_root):
    coop = train_classifier(colour_root, "coop", {"ctx_init": "a photo of a"})
    zero = train_classifier(colour_root, "dvpt", PLAIN | {"ctx_init": "a photo of a", "visual_aug": "feature",
                                                         "lambda_aug": 0.0})
    assert torch.equal(coop, zero)
    on = train_classifier(colour_root, "dvpt", PLAIN | {"ctx_init": "a photo of a", "visual_aug": "feature"})
    assert not torch.equal(coop, on)


def test_feature_aug_test_time_classifier_depends_on_no_image(backbone):
    method = make(backbone, visual_aug="feature", mi="none")
    loss = method.losses(feature_batch(backbone), first_step())
    assert torch.isfinite(loss["aug"]) and float(loss["aug"]) > 0
    with torch.no_grad():
        before = method.classifier()
        method.feature_bank.observe(F.normalize(torch.randn(6, backbone.embed_dim), dim=-1), torch.arange(6) % 3)
        after = method.classifier()
    assert torch.equal(before, after)  # the bank never reaches the classifier


def test_feature_aug_is_listed_by_dvpt_methods(capsys):
    main(["methods"])
    out = capsys.readouterr().out
    assert "visual_aug: proto | mixup | feature | protoview | none" in out


@pytest.mark.parametrize("aug", ["feature", "protoview"])
def test_training_only_aug_at_zero_strength_is_coop_and_changes_training_when_on(colour_root, aug):
    coop = train_classifier(colour_root, "coop", {"ctx_init": "a photo of a"})
    base = PLAIN | {"ctx_init": "a photo of a", "visual_aug": aug}
    assert torch.equal(coop, train_classifier(colour_root, "dvpt", base | {"lambda_aug": 0.0}))
    assert not torch.equal(coop, train_classifier(colour_root, "dvpt", base))


def test_protoview_term_is_infonce_between_soft_view_and_prototypes(backbone):
    from dvpt.losses.mi import infonce_loss

    method = make(backbone, visual_aug="protoview", mi="none")
    batch = feature_batch(backbone)
    got = method.losses(batch, first_step())["aug"]
    with torch.no_grad():
        protos = F.normalize(torch.stack([F.normalize(batch.features[batch.labels == c].float(), dim=-1).mean(0)
                                          for c in range(3)]), dim=-1)
        ref = infonce_loss(method.soft_features(), protos, method.options.mi_temperature)
        before = method.classifier()
        method.feature_bank.observe(F.normalize(torch.randn(6, backbone.embed_dim), dim=-1), torch.arange(6) % 3)
        assert torch.equal(before, method.classifier())
    assert float(got) == pytest.approx(float(ref), rel=1e-4)
