"""Exported prompts (``dvpt export``), ``dvpt predict`` and ``dvpt.load_prompt``.

The claim pinned here: a ``.dvpt`` file reproduces the run's own evaluation logits exactly,
on the trained classes and on class names it never saw (base-to-novel), and every way a
file can be unusable is one clear error (exit 2, one line, no traceback) on the CLI.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dvpt
from conftest import capture_evaluations, make_colour_folder
from dvpt.backbones.hf_clip import HFCLIPBackbone
from dvpt.inference.api import export_prompt
from dvpt.cli import main
from dvpt.config import build_config
from dvpt.engine.evaluate import accuracy_from_logits
from dvpt.engine.runner import run_training
from dvpt.engine.session import Session
from dvpt.errors import DvptError
from dvpt.inference.prompt_file import FORMAT_VERSION, PromptFileError, read_prompt_file, write_prompt_file
from dvpt.registry import BACKBONES, METHODS

COLOURS4 = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 230, 20)}


@dataclasses.dataclass
class TrainedRun:
    """A finished run, its exported prompt, and what its evaluation computed (captured)."""

    run_dir: Path
    prompt_path: Path
    evaluations: list[tuple[list[str], list, torch.Tensor]]  # (classes, items, logits) per evaluation


def train_and_export(root: Path, out: Path, method: str, protocol: str) -> TrainedRun:
    cfg = build_config(method=method, flags={
        "backbone": "tiny-random", "protocol": protocol, "device": "cpu", "precision": "fp32",
        "data": {"dataset": "folder", "root": str(root), "shots": 4},
        "optim": {"epochs": 2, "batch_size": 4, "lr": 0.01},
    })
    session = Session(cfg)
    captured = capture_evaluations(session)  # the run's own evaluations, recorded as they happen
    run_dir = out / f"run-{method}-{protocol}"
    run_training(cfg, run_dir, session=session)
    prompt_path = export_prompt(run_dir, out / f"{method}-{protocol}.dvpt")
    return TrainedRun(run_dir, prompt_path, captured)


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_colour_folder(tmp_path_factory.mktemp("export-colours"), COLOURS4, per_class=10, size=24)


@pytest.fixture(scope="module")
def b2n(colours: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    return train_and_export(colours, tmp_path_factory.mktemp("b2n"), "coop", "base2novel")


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


# ---- reproduction --------------------------------------------------------------------------
def test_file_holds_the_method_state_and_metadata(b2n: TrainedRun) -> None:
    from safetensors.torch import load_file

    loaded = read_prompt_file(b2n.prompt_path)
    ckpt = {k: v for k, v in load_file(str(b2n.run_dir / "checkpoint" / "learnable.safetensors")).items()
            if not k.startswith("trainer_state.")}  # the optimiser state stays in the run folder
    assert set(loaded.tensors) == set(ckpt) == {"prompt_learner.ctx"}
    assert all(torch.equal(loaded.tensors[k], ckpt[k]) for k in ckpt)
    meta = loaded.meta
    base_classes = b2n.evaluations[0][0]
    assert (meta.method, meta.backbone, meta.classnames) == ("coop", "tiny-random", base_classes)
    assert meta.backbone_identity == HFCLIPBackbone.tiny_random().identity()
    assert meta.options == {"n_ctx": 4, "ctx_init": "a photo of a", "class_specific": False}
    assert meta.format_version == FORMAT_VERSION and meta.templates


def test_api_reproduces_the_run_evaluation_logits_exactly(b2n: TrainedRun) -> None:
    classes, items, run_logits = b2n.evaluations[0]
    prompt = dvpt.load_prompt(b2n.prompt_path, device="cpu")
    assert prompt.classnames == classes  # default: the trained classes
    logits = prompt.logits([d.path for d in items])
    assert logits.shape == (len(items), len(classes))
    assert torch.equal(logits, run_logits)
    probs = prompt.classify([d.path for d in items])
    assert torch.equal(probs, run_logits.softmax(-1))
    assert torch.allclose(probs.sum(-1), torch.ones(len(items)))


def test_api_accepts_pil_images_and_transformed_tensors(b2n: TrainedRun) -> None:
    from PIL import Image

    _, items, run_logits = b2n.evaluations[0]
    prompt = dvpt.load_prompt(b2n.prompt_path, device="cpu")
    pil = [Image.open(d.path) for d in items[:3]]
    batch = torch.stack([prompt.backbone.eval_transform()(im.convert("RGB")) for im in pil])
    by_path = prompt.logits([d.path for d in items[:3]])
    # the same batch size runs the same kernels: PIL images and tensors equal paths bit for bit
    assert torch.equal(prompt.logits(pil), by_path)
    assert torch.equal(prompt.logits(batch), by_path)
    # a batch of 3 against the run's full batch: another matmul blocking on some CPUs
    assert torch.allclose(by_path, run_logits[:3], atol=1e-5, rtol=0)
    # a batch of one takes another matmul kernel: equal up to float32 rounding, not bit for bit
    assert torch.allclose(prompt.logits(items[0].path), run_logits[:1], atol=1e-5, rtol=0)


def test_text_features_are_unit_norm_and_the_method_classifier(b2n: TrainedRun) -> None:
    prompt = dvpt.load_prompt(b2n.prompt_path, device="cpu")
    names = ["crimson", "emerald green", "navy"]
    feats = prompt.text_features(names)
    assert feats.shape == (3, prompt.backbone.embed_dim)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert prompt.method.classnames == names and prompt.classnames == b2n.evaluations[0][0]
    with torch.no_grad():
        reference = F.normalize(prompt.method.prompt_learner().float(), dim=-1)
    assert torch.equal(feats, reference)
    # the same scale as training: logits = logit_scale * cos
    image = prompt.transform(b2n.evaluations[0][1][0].path)[None]
    with torch.no_grad():
        img = F.normalize(prompt.backbone.encode_image(image).float(), dim=-1)
    assert torch.allclose(prompt.logits(image, names), prompt.backbone.logit_scale * img @ feats.t(), atol=1e-5)


def test_novel_class_names_reproduce_the_runs_novel_evaluation(b2n: TrainedRun) -> None:
    novel_classes, items, run_logits = b2n.evaluations[-1]  # the last: base2novel also evaluates training accuracy
    record = json.loads((b2n.run_dir / "eval" / "novel.json").read_text())
    assert record["classes"] == novel_classes
    prompt = dvpt.load_prompt(b2n.prompt_path, device="cpu")
    assert not set(novel_classes) & set(prompt.classnames)  # names the prompt never saw
    probs = prompt.classify([d.path for d in items], classnames=novel_classes)
    assert torch.equal(prompt.logits([d.path for d in items], novel_classes), run_logits)
    assert torch.equal(probs, run_logits.softmax(-1))
    labels = torch.tensor([d.label for d in items])
    acc, per_class = accuracy_from_logits(probs, labels, len(novel_classes))
    assert acc == record["accuracy"]
    assert per_class == record["per_class_accuracy"]
    # a call without class names is back on the tuned classes: calls do not leak into each other
    _, base_items, base_logits = b2n.evaluations[0]
    assert torch.equal(prompt.logits([d.path for d in base_items]), base_logits)


def test_cli_json_reproduces_the_run_logits(b2n: TrainedRun, capsys: pytest.CaptureFixture) -> None:
    for classes, items, run_logits in b2n.evaluations:  # base (trained) and novel (unseen) names
        code, out, err = cli(capsys, "predict", "--prompt", str(b2n.prompt_path), *[d.path for d in items],
                             "--classes", ",".join(classes), "--format", "json", "--device", "cpu", "--top-k", "2")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["classes"] == classes and doc["method"] == "coop" and doc["skipped"] == []
        by_path = {r["path"]: r for r in doc["images"]}
        got = torch.tensor([by_path[d.path]["logits"] for d in items], dtype=torch.float32)
        assert torch.equal(got, run_logits)
        first = by_path[items[0].path]
        assert [t["class"] for t in first["top"]] == [classes[i] for i in run_logits[0].argsort(descending=True)[:2]]


def test_cli_folder_table_and_csv(b2n: TrainedRun, colours: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), str(colours / "red"), "--device", "cpu",
                         "--classes", "red,green,blue", "--top-k", "1", "--batch-size", "3")
    assert code == 0, err
    rows = [line for line in out.splitlines() if ".png" in line]
    assert len(rows) == 10 and all("%" in r for r in rows)
    code, out, _ = cli(capsys, "predict", "-p", str(b2n.prompt_path), str(colours / "red" / "000.png"),
                       "--classes", "red,green,blue", "--format", "csv", "--device", "cpu")
    lines = out.strip().splitlines()
    assert lines[0] == "path,rank,class,probability,logit" and len(lines) == 4
    assert sorted(line.split(",")[2] for line in lines[1:]) == ["blue", "green", "red"]
    assert abs(sum(float(line.split(",")[3]) for line in lines[1:]) - 1) < 1e-6


def test_classes_file_and_export_command(b2n: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_file = tmp_path / "again.dvpt"
    code, out, err = cli(capsys, "export", str(b2n.run_dir), "-o", str(out_file))
    assert code == 0, err
    assert str(out_file) in out
    assert torch.equal(read_prompt_file(out_file).tensors["prompt_learner.ctx"],
                       read_prompt_file(b2n.prompt_path).tensors["prompt_learner.ctx"])
    classes = tmp_path / "classes.txt"
    classes.write_text("# colours\nscarlet\n\nlime\n")
    _, items, _ = b2n.evaluations[0]
    code, out, err = cli(capsys, "predict", "-p", str(out_file), items[0].path, "--classes-file", str(classes),
                         "--format", "json", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["classes"] == ["scarlet", "lime"]


def test_export_never_replaces_an_existing_file_unasked(b2n: TrainedRun, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "mine.dvpt"
    mine.write_bytes(b"the user's own file")
    code, _, err = cli(capsys, "export", str(b2n.run_dir), "-o", str(mine))
    assert_one_line_error(code, err, str(mine), "--force")
    assert mine.read_bytes() == b"the user's own file"
    code, _, err = cli(capsys, "export", str(b2n.run_dir), "-o", str(mine), "--force")
    assert code == 0, err
    assert torch.equal(read_prompt_file(mine).tensors["prompt_learner.ctx"],
                       read_prompt_file(b2n.prompt_path).tensors["prompt_learner.ctx"])


# ---- errors --------------------------------------------------------------------------------
def test_unreadable_images_are_reported_and_skipped(b2n: TrainedRun, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    _, items, run_logits = b2n.evaluations[0]
    folder = tmp_path / "mixed" / "nested"
    folder.mkdir(parents=True)
    good = [folder / f"good{i}.png" for i in range(3)]
    for src, dst in zip(items[:3], good):
        dst.write_bytes(Path(src.path).read_bytes())
    broken = folder / "broken.png"
    broken.write_bytes(good[0].read_bytes()[:40])  # truncated PNG
    text = folder / "notes.jpg"
    text.write_text("not an image")
    code, out, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), str(tmp_path / "mixed"),
                         str(tmp_path / "nope.png"), "--format", "json", "--device", "cpu")
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(r["path"] for r in doc["images"]) == sorted(str(p) for p in good)
    assert sorted(s["path"] for s in doc["skipped"]) == sorted([str(broken), str(text), str(tmp_path / "nope.png")])
    for path in (broken, text, tmp_path / "nope.png"):
        assert str(path) in err
    assert "Traceback" not in err
    got = {r["path"]: r["logits"] for r in doc["images"]}
    # 3 images against the run's full batch: another matmul blocking on some CPUs
    assert torch.allclose(torch.tensor([got[str(p)] for p in good]), run_logits[:3], atol=1e-5, rtol=0)


def test_all_images_unreadable_is_one_error(b2n: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    code, _, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), str(bad), "--device", "cpu")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("dvpt predict: error: none of the 1 image")


def _bad_files(b2n: TrainedRun, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a prompt file that cannot be used, a phrase its error must contain)."""
    loaded = read_prompt_file(b2n.prompt_path)
    newer = tmp_path / "newer.dvpt"
    write_prompt_file(newer, loaded.tensors, dataclasses.replace(loaded.meta, format_version=FORMAT_VERSION + 1))
    truncated = tmp_path / "truncated.dvpt"
    data = b2n.prompt_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.dvpt"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(foreign))
    return {
        "newer": (newer, "newer than this dvpt"),
        "truncated": (truncated, "corrupt"),
        "foreign": (foreign, "not a dvpt prompt"),
        "missing": (tmp_path / "missing.dvpt", "not found"),
    }


@pytest.mark.parametrize("case", ["newer", "truncated", "foreign", "missing"])
def test_unusable_files_are_one_clear_error(case: str, b2n: TrainedRun, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    path, phrase = _bad_files(b2n, tmp_path)[case]
    with pytest.raises(PromptFileError, match=phrase) as info:
        dvpt.load_prompt(path, device="cpu")
    assert str(path) in str(info.value)
    code, _, err = cli(capsys, "predict", "-p", str(path), b2n.evaluations[0][1][0].path, "--device", "cpu")
    assert_one_line_error(code, err, "dvpt predict: error:", str(path), phrase)


@pytest.fixture(scope="module")
def other_tiny() -> str:
    """A registered tiny-random built with another seed: same name and shapes, other weights."""
    name = "tiny-random-seed1-export-test"
    if name not in BACKBONES:
        BACKBONES.add(name, lambda **_: HFCLIPBackbone.tiny_random(seed=1))
    return name


def test_backbone_mismatch_is_one_clear_error(b2n: TrainedRun, other_tiny: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(PromptFileError, match="identity") as info:
        dvpt.load_prompt(b2n.prompt_path, backbone=HFCLIPBackbone.tiny_random(seed=1))
    assert "tiny-random" in str(info.value) and str(b2n.prompt_path) in str(info.value)
    item = b2n.evaluations[0][1][0].path
    code, _, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), item, "--backbone", other_tiny, "--device", "cpu")
    assert_one_line_error(code, err, "identity", str(b2n.prompt_path))
    # asked for explicitly, a mismatched backbone is used (same shapes here, so it runs)
    code, out, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), item, "--backbone", other_tiny,
                         "--allow-backbone-mismatch", "--format", "json", "--device", "cpu")
    assert code == 0, err
    assert len(json.loads(out)["images"]) == 1


def test_user_mistakes_in_arguments(b2n: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    item = b2n.evaluations[0][1][0].path
    code, _, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), item, "--classes", "cat,dog,cat")
    assert_one_line_error(code, err, "repeated: cat")
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), str(tmp_path / "empty"))
    assert_one_line_error(code, err, "no images found")
    code, _, err = cli(capsys, "predict", "-p", str(b2n.prompt_path), str(tmp_path / "absent.png"))
    assert_one_line_error(code, err, "not found: " + str(tmp_path / "absent.png"))
    code, _, err = cli(capsys, "export", str(tmp_path), "-o", str(tmp_path / "x.dvpt"))
    assert_one_line_error(code, err, "not a dvpt run folder")
    assert not (tmp_path / "x.dvpt").exists()


# ---- every registered method --------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_exports_and_reproduces_its_evaluation(method: str, colours: Path,
                                                            tmp_path: Path) -> None:
    run = train_and_export(colours, tmp_path, method, "base2novel")
    prompt = dvpt.load_prompt(run.prompt_path, device="cpu")
    assert prompt.meta.method == method
    state = {k: v for k, v in prompt.method.state_dict().items()}
    assert set(state) == set(read_prompt_file(run.prompt_path).tensors)
    for classes, items, run_logits in run.evaluations:  # trained classes, then unseen ones
        logits = prompt.logits([d.path for d in items], classnames=classes)
        assert torch.equal(logits, run_logits), (method, (logits - run_logits).abs().max())
        assert torch.equal(logits.argmax(-1), run_logits.argmax(-1))
    with torch.no_grad():
        classifier = prompt.method.classifier_or_none()
    if classifier is None:  # image-conditioned text features (CoCoOp): none to return, said so
        with pytest.raises(DvptError, match="conditions its text features on each image"):
            prompt.text_features()
    else:
        assert torch.allclose(prompt.text_features().norm(dim=-1), torch.ones(len(prompt.classnames)), atol=1e-5)


def test_unfinished_run_needs_partial(b2n: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run_dir = tmp_path / "stopped"
    shutil.copytree(b2n.run_dir, run_dir)
    (run_dir / "metrics.json").unlink()
    ckpt = run_dir / "checkpoint" / "learnable.safetensors"
    with safe_open(str(ckpt), "pt") as handle:
        meta = handle.metadata()
    state = json.loads(meta["trainer_state"])
    state["__dict__"] = [[k, {"finalized": False, "epoch": 1}.get(k, v)] for k, v in state["__dict__"]]
    save_file(load_file(ckpt), str(ckpt), metadata=meta | {"trainer_state": json.dumps(state)})
    code, _, err = cli(capsys, "export", str(run_dir), "-o", str(tmp_path / "p.dvpt"))
    assert_one_line_error(code, err, "did not finish training", "--partial")
    assert not (tmp_path / "p.dvpt").exists()
    code, _, err = cli(capsys, "export", str(run_dir), "-o", str(tmp_path / "p.dvpt"), "--partial")
    assert code == 0, err
    assert torch.equal(read_prompt_file(tmp_path / "p.dvpt").tensors["prompt_learner.ctx"],
                       read_prompt_file(b2n.prompt_path).tensors["prompt_learner.ctx"])

