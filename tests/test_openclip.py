"""open_clip models behind the backbone interface (``openclip-tiny-random``).

Pinned here: the adapter's own text and image loops equal open_clip's ``encode_text`` and
``encode_image``; prompts reach the towers; the model is frozen; its cache identity is its own;
and every method trains, exports and predicts on it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("open_clip", reason="the [openclip] extra is not installed")

import dvpt  # noqa: E402
from conftest import make_colour_folder  # noqa: E402
from dvpt.backbones import load_backbone  # noqa: E402
from dvpt.backbones.open_clip import TINY_CONFIG, OpenCLIPBackbone  # noqa: E402
from dvpt.config import build_config  # noqa: E402
from dvpt.engine.runner import run_training  # noqa: E402
from dvpt.engine.session import Session  # noqa: E402
from dvpt.inference.api import export_prompt  # noqa: E402
from dvpt.registry import METHODS  # noqa: E402

TEXTS = ["a photo of a red cat.", "dog", "a blurry photo of a large yellow school bus, seen from afar"]
COLOURS4 = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 230, 20)}


@pytest.fixture(scope="module")
def oc() -> OpenCLIPBackbone:
    return load_backbone("openclip-tiny-random")


def test_text_features_equal_open_clip_encode_text(oc: OpenCLIPBackbone) -> None:
    ours = oc.encode_text(TEXTS)
    ref = oc.model.encode_text(oc.tokenizer(TEXTS))
    assert ours.shape == (3, oc.embed_dim)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_image_features_equal_open_clip_encode_image(oc: OpenCLIPBackbone) -> None:
    images = torch.randn(2, 3, oc.image_size, oc.image_size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(oc.encode_image(images), oc.model.encode_image(images), atol=1e-5, rtol=0)
    torch.testing.assert_close(oc.encode_image(images, []), oc.model.encode_image(images), atol=1e-5, rtol=0)
    prompts = [torch.randn(2, oc.vision_width) for _ in range(oc.vision_layers)]
    assert not torch.allclose(oc.encode_image(images, prompts), oc.model.encode_image(images), atol=1e-3)


def test_text_deep_prompts_replace_the_prefix(oc: OpenCLIPBackbone) -> None:
    tokens = oc.tokenize(TEXTS)
    emb = oc.embed_tokens(tokens.ids)
    plain = oc.encode_text_embeddings(emb, tokens)
    prompted = oc.encode_text_embeddings(emb, tokens, [torch.randn(2, oc.text_width)])
    assert prompted.shape == plain.shape and not torch.allclose(prompted, plain, atol=1e-3)


def test_tokens_end_at_the_end_token(oc: OpenCLIPBackbone) -> None:
    tokens = oc.tokenize(TEXTS)
    eot = tokens.ids[torch.arange(len(TEXTS)), tokens.eot_index]
    assert eot.tolist() == [oc.tokenizer.eot_token_id] * 3
    assert tokens.ids.shape[1] == int(tokens.lengths.max()) < oc.max_text_length


def test_frozen_and_identity_is_its_own(oc: OpenCLIPBackbone) -> None:
    assert all(not p.requires_grad for p in oc.parameters()) and not oc.model.training
    again = OpenCLIPBackbone.from_config(TINY_CONFIG, "openclip-tiny-random")
    other_seed = OpenCLIPBackbone.from_config(TINY_CONFIG, "openclip-tiny-random", seed=1)
    assert again.identity() == oc.identity()
    assert other_seed.identity() != oc.identity()
    assert load_backbone("tiny-random").identity() != oc.identity()


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_colour_folder(tmp_path_factory.mktemp("oc-colours"), COLOURS4, per_class=6, size=24)


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_exports_and_predicts(method: str, colours: Path, tmp_path: Path) -> None:
    cfg = build_config(method=method, flags={
        "backbone": "openclip-tiny-random", "protocol": "base2novel", "device": "cpu", "precision": "fp32",
        "data": {"dataset": "folder", "root": str(colours), "shots": 2},
        "optim": {"epochs": 1, "batch_size": 4, "lr": 0.01},
    })
    session = Session(cfg)
    captured: list = []
    evaluate = session.evaluate

    def capture(method_obj, items):
        result = evaluate(method_obj, items)
        captured.append((list(method_obj.classnames), list(items), result.logits.clone()))
        return result

    session.evaluate = capture  # type: ignore[method-assign]
    run_dir = tmp_path / "run"
    run_training(cfg, run_dir, session=session)
    prompt = dvpt.load_prompt(export_prompt(run_dir, tmp_path / f"{method}.dvpt"), device="cpu")
    classes, items, run_logits = captured[0]
    assert prompt.classnames == classes
    logits = prompt.logits([d.path for d in items])
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, run_logits, atol=1e-5, rtol=0)


# ---- openclip:<model>[/<tag>] names ------------------------------------------------------------
@pytest.mark.parametrize("spec, needles", [
    ("openclip:NoSuchModel", ["'NoSuchModel'", "list_models"]),
    ("openclip:ViT-B-32/no_such_tag", ["'no_such_tag'", "openai"]),
])
def test_bad_names_give_one_clear_line(spec: str, needles: list, capsys, colours: Path, tmp_path: Path) -> None:
    from dvpt.cli import main

    code = main(["train", "--method", "coop", "--backbone", spec, "--dataset", "folder", "--root", str(colours),
                 "--shots", "2", "--epochs", "1", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_untagged_model_is_random_with_a_warning() -> None:
    from dvpt.backbones.open_clip import load_open_clip

    with pytest.warns(UserWarning, match="random weights"):
        b = load_open_clip("openclip:ViT-B-32")
    assert (b.embed_dim, b.text_width, b.vision_width, b.image_size) == (512, 512, 768, 224)
    torch.testing.assert_close(b.encode_text(TEXTS[:2]), b.model.encode_text(b.tokenizer(TEXTS[:2])), atol=1e-5, rtol=0)


# ---- backbone_checkpoint: a local weights file for openclip:<model> ---------------------------
@pytest.fixture
def tiny_model_name(monkeypatch) -> str:
    """open_clip knows the tiny config under a model name for this test only."""
    import copy

    import open_clip.factory

    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "DvptTiny", copy.deepcopy(TINY_CONFIG))
    return "DvptTiny"


def _save(model: torch.nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_checkpoint_file_and_folder_load_those_weights(tiny_model_name: str, tmp_path: Path) -> None:
    from dvpt.backbones.open_clip import load_open_clip

    trained = OpenCLIPBackbone.from_config(TINY_CONFIG, "src", seed=3)  # weights no seed-0 model has
    file = _save(trained.model, tmp_path / "open_clip_model.safetensors")
    for given in (file, tmp_path):
        b = load_open_clip(f"openclip:{tiny_model_name}", str(given))
        torch.testing.assert_close(b.encode_text(TEXTS), trained.model.encode_text(trained.tokenizer(TEXTS)),
                                   atol=1e-5, rtol=0)
    random = OpenCLIPBackbone.from_config(TINY_CONFIG, f"openclip:{tiny_model_name}")
    assert b.identity() != random.identity()


@pytest.mark.parametrize("problem, needle", [
    ("other-model", "does not match open_clip model"),
    ("pickle", "not a .safetensors file"),
    ("missing", "does not exist"),
    ("tag", "use one of them"),
    ("not-openclip", "applies to openclip:<model>"),
])
def test_bad_checkpoint_is_one_clear_message(problem: str, needle: str, tiny_model_name: str, tmp_path: Path) -> None:
    from dvpt.errors import BackboneError

    name, path = f"openclip:{tiny_model_name}", tmp_path / "weights.safetensors"
    if problem == "other-model":
        wider = {**TINY_CONFIG, "text_cfg": {**TINY_CONFIG["text_cfg"], "width": 96, "heads": 4}}
        _save(OpenCLIPBackbone.from_config(wider, "wider").model, path)
    elif problem == "pickle":
        path = tmp_path / "weights.bin"
        path.write_bytes(b"not read")
    elif problem == "tag":
        name = "openclip:ViT-B-32/openai"
    elif problem == "not-openclip":
        name = "tiny-random"
    with pytest.raises(BackboneError, match=needle) as info:
        load_backbone(name, "cpu", str(path))
    assert "\n" not in str(info.value)
    if problem not in ("tag", "not-openclip"):
        assert path.name in str(info.value)


def test_mismatched_checkpoint_on_the_command_line(tiny_model_name: str, colours: Path, tmp_path: Path,
                                                   capsys) -> None:
    from dvpt.cli import main

    wider = {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "layers": 3}}
    path = _save(OpenCLIPBackbone.from_config(wider, "deeper").model, tmp_path / "deeper.safetensors")
    code = main(["train", "--method", "coop", "--backbone", f"openclip:{tiny_model_name}", "--set",
                 f"backbone_checkpoint={path}", "--dataset", "folder", "--root", str(colours), "--shots", "2",
                 "--epochs", "1", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "deeper.safetensors" in lines[0] and "does not match" in lines[0] and "resblocks" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_train_with_checkpoint_then_predict_uses_it(tiny_model_name: str, colours: Path, tmp_path: Path) -> None:
    """The run records backbone_checkpoint, and the exported prompt reloads the same weights."""
    trained = OpenCLIPBackbone.from_config(TINY_CONFIG, "src", seed=5)
    file = _save(trained.model, tmp_path / "w.safetensors")
    cfg = build_config(method="coop", flags={
        "backbone": f"openclip:{tiny_model_name}", "backbone_checkpoint": str(file), "protocol": "all",
        "device": "cpu", "precision": "fp32", "data": {"dataset": "folder", "root": str(colours), "shots": 2},
        "optim": {"epochs": 1, "batch_size": 4, "lr": 0.01},
    })
    run_dir = tmp_path / "run"
    run_training(cfg, run_dir)
    prompt = dvpt.load_prompt(export_prompt(run_dir, tmp_path / "p.dvpt"), device="cpu")
    assert prompt.meta.backbone_checkpoint == str(file.resolve())
    assert prompt.backbone.identity() == load_backbone(f"openclip:{tiny_model_name}", "cpu", str(file)).identity()


@pytest.mark.slow
def test_train_untagged_vit_b32_one_epoch_on_a_folder(colours: Path, tmp_path: Path, capsys) -> None:
    """`dvpt train --backbone openclip:ViT-B-32`: random weights with a warning, one epoch, metrics written."""
    import json

    from dvpt.cli import main

    with pytest.warns(UserWarning, match="random weights"):
        code = main(["train", "--method", "coop", "--backbone", "openclip:ViT-B-32", "--dataset", "folder",
                     "--root", str(colours), "--shots", "2", "--epochs", "1", "--set", "device=cpu", "--set", "cache.views=1",
                     "-o", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and 0.0 <= metrics["evaluations"][0]["accuracy"] <= 100.0
