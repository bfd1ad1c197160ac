"""The paper sweeps resolve to the official recipes (shared reference: the official configs).

One row per method x protocol x notable dataset: the run's config as ``dvpt sweep`` resolves
it (method preset < spec layers < rules) must equal the value of the official config file
named in the row, so a spec or preset that drifts from the published recipe fails here.
"""
from __future__ import annotations

from typing import Any

import pytest

from dvpt.config.loader import deep_merge, from_dict, method_preset, validate_method_options
from dvpt.config.schema import RunConfig
from dvpt.sweep import load_spec

# spec, method, dataset, shots, {dotted key: official value}, source of the official value
ROWS: list[tuple[str, str, str, int, dict[str, Any], str]] = [
    ("paper_base2novel", "coop", "caltech101", 16,
     {"optim.epochs": 200, "optim.batch_size": 32, "optim.lr": 0.002, "options.n_ctx": 4},
     "CoOp configs/trainers/CoOp/vit_b16_ctxv1.yaml"),
    ("paper_base2novel", "coop", "imagenet", 16, {"optim.epochs": 50, "optim.lr": 0.002},
     "CoOp configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml (scripts/cocoop/base2new_train.sh)"),
    ("paper_base2novel", "cocoop", "imagenet", 16, {"optim.epochs": 10, "optim.batch_size": 1},
     "CoOp configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"),
    ("paper_base2novel", "kgcoop", "dtd", 16, {"optim.epochs": 100, "optim.batch_size": 128},
     "KgCoOp configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml"),
    ("paper_base2novel", "maple", "eurosat", 16,
     {"optim.epochs": 5, "optim.lr": 0.0035, "optim.batch_size": 4, "options.prompt_depth": 9},
     "MaPLe configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"),
    ("paper_base2novel", "promptsrc", "food101", 16,
     {"optim.epochs": 20, "options.depth_text": 9, "options.gpa_mean": 15.0, "options.gpa_std": 1.0},
     "PromptSRC configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"),
    ("paper_crossdataset", "coop", "imagenet", 16, {"optim.epochs": 50},
     "CoOp scripts/cocoop/xd_train.sh -> vit_b16_ep50_ctxv1.yaml"),
    ("paper_crossdataset", "cocoop", "imagenet", 16, {"optim.epochs": 10, "optim.batch_size": 1},
     "CoOp scripts/cocoop/xd_train.sh -> vit_b16_c4_ep10_batch1_ctxv1.yaml"),
    ("paper_crossdataset", "maple", "imagenet", 16,
     {"optim.epochs": 2, "optim.lr": 0.0026, "options.prompt_depth": 3},
     "MaPLe configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml"),
    ("paper_crossdataset", "promptsrc", "imagenet", 16,
     {"optim.epochs": 20, "options.depth_text": 3, "options.depth_vision": 3,
      "options.gpa_mean": 6.0, "options.gpa_std": 10.0},
     "PromptSRC configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml"),
    ("paper_domaingen", "maple", "imagenet", 16,
     {"optim.epochs": 2, "optim.lr": 0.0026, "options.prompt_depth": 3},
     "MaPLe configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml"),
    ("paper_domaingen", "promptsrc", "imagenet", 16,
     {"options.depth_text": 3, "options.depth_vision": 3, "options.gpa_mean": 6.0, "options.gpa_std": 10.0},
     "PromptSRC configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml"),
    ("paper_fewshot", "promptsrc", "imagenet", 4,
     {"optim.epochs": 50, "optim.batch_size": 4, "options.gpa_mean": 30.0, "options.gpa_std": 30.0},
     "PromptSRC configs/trainers/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml"),
    ("paper_fewshot", "promptsrc", "fgvc_aircraft", 1,
     {"optim.epochs": 50, "options.gpa_mean": 45.0, "options.gpa_std": 5.0},
     "PromptSRC scripts/promptsrc/few_shot.sh (Cars, Flowers, Aircraft, DTD, EuroSAT)"),
    ("paper_fewshot", "coop", "imagenet", 2, {"optim.epochs": 50},
     "CoOp configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml"),
    ("paper_fewshot", "prograd", "dtd", 16, {"options.lam": 0.8},
     "ProGrad README: lambda 0.8 for 8/16 shots on Flowers, DTD, EuroSAT"),
    ("paper_fewshot", "prograd", "dtd", 4, {"options.lam": 1.0},
     "ProGrad scripts/base2new_train_prograd.sh (LAMBDA=1.0)"),
    ("paper_fewshot", "prograd", "caltech101", 16, {"options.lam": 1.0},
     "ProGrad scripts/base2new_train_prograd.sh (LAMBDA=1.0)"),
] + [
    (spec, "prograd", dataset, shots,
     {"options.n_ctx": 16, "options.ctx_init": "template", "options.count_words": True, "options.fp32_teacher": True},
     "ProGrad trainers/prograd.py: words counted with split(' '), teacher clip_model.float()")
    for spec, dataset, shots in [("paper_base2novel", "oxford_pets", 16), ("paper_crossdataset", "imagenet", 16),
                                 ("paper_domaingen", "imagenet", 16), ("paper_fewshot", "food101", 1)]
] + [
    # every trainer's default PREC fp16: CLIP as OpenAI's build_model leaves it (half weights),
    # no clip_model.float(), no GradScaler
    (spec, method, "imagenet", 16, {"precision": "fp16-weights"},
     "PREC fp16 (train.py extend_cfg default); clip.build_model's convert_weights")
    for spec in ("paper_base2novel", "paper_crossdataset", "paper_domaingen", "paper_fewshot")
    for method in ("zeroshot", "coop", "cocoop", "kgcoop", "prograd", "maple", "promptsrc")
]


def resolved(spec: str, method: str, dataset: str, shots: int) -> dict[str, Any]:
    """The run's merged config as ``dvpt sweep`` builds it, checked by the schemas."""
    jobs = load_spec(spec).jobs(["data.root=/data"])
    [job] = [j for j in jobs if j.method == method and j.config["data"]["dataset"] == dataset
             and j.config["data"]["shots"] == shots and j.config["seed"] == 1]
    merged = deep_merge(method_preset(method), job.config)
    validate_method_options(from_dict(RunConfig, merged))
    return merged


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("spec, method, dataset, shots, official, source", ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}-{r[3]}shot" for r in ROWS])
def test_paper_spec_resolves_to_official_recipe(spec: str, method: str, dataset: str, shots: int,
                                                official: dict[str, Any], source: str) -> None:
    config = resolved(spec, method, dataset, shots)
    got = {key: lookup(config, key) for key in official}
    assert got == official, f"{spec} {method} on {dataset}: drifted from {source}"


@pytest.mark.parametrize("spec, runs, source", [
    ("paper_base2novel", 11 * 8 * 3, "imagenet"), ("paper_crossdataset", 8 * 3, "imagenet"),
    ("paper_domaingen", 8 * 3, "imagenet"), ("paper_fewshot", 11 * 8 * 5 * 3, "imagenet"),
])
def test_paper_specs_list_their_runs(spec: str, runs: int, source: str) -> None:
    jobs = load_spec(spec).jobs(["data.root=/data"])
    assert len(jobs) == runs and jobs[0].config["data"]["dataset"] == source
    assert {j.config["backbone"] for j in jobs} == {"openai/clip-vit-base-patch16"}


@pytest.mark.parametrize("spec", ["paper_base2novel", "paper_crossdataset", "paper_domaingen", "paper_fewshot"])
def test_paper_specs_use_the_fidelity_mode(spec: str) -> None:
    """No feature cache (so the image path augments at every step) and the official pure fp16."""
    configs = {j.name: from_dict(RunConfig, j.config) for j in load_spec(spec).jobs(["data.root=/data"])}
    assert {(c.cache.enabled, c.precision) for c in configs.values()} == {(False, "fp16-weights")}


def test_fidelity_path_draws_a_fresh_crop_of_one_image_every_epoch(tmp_path) -> None:
    """The image path the paper specs train on: epoch 0 and epoch 1 see different crops of one image."""
    import numpy as np
    import torch
    from PIL import Image

    from dvpt.backbones.transforms import train_transform
    from dvpt.data.base import Datum
    from dvpt.engine.features import ImageBatches

    rng = np.random.default_rng(0)
    path = tmp_path / "one.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    batches = ImageBatches([Datum(str(path), 0, "thing")], train_transform(32), batch_size=1, seed=1)
    epochs = [[b.images for b in batches.epoch(e)] for e in range(3)]
    assert all(len(e) == 1 and e[0].shape == (1, 3, 32, 32) for e in epochs)
    first, second, third = (e[0] for e in epochs)
    assert not torch.allclose(first, second) and not torch.allclose(second, third)
    again = [b.images for b in batches.epoch(0)][0]
    assert torch.equal(first, again)  # a fresh draw per epoch, still reproducible from the seed


@pytest.mark.parametrize("spec", ["paper_base2novel", "paper_crossdataset", "paper_domaingen", "paper_fewshot"])
def test_explain_finds_no_drift_from_the_official_table(spec: str) -> None:
    from dvpt.sweep.explain import explain

    checks = explain(load_spec(spec), ["data.root=/data"])
    assert len(checks) >= 16 and all(c.source for c in checks)
    assert [c for c in checks if c.drift] == []


def test_explain_flags_a_spec_that_drifts(tmp_path) -> None:
    """paper_crossdataset without its MaPLe rule: MaPLe's base-to-novel recipe shows as drift."""
    import subprocess
    import sys

    import yaml

    from dvpt.sweep.explain import explain
    from dvpt.sweep.spec import resolve_spec_path

    data = yaml.safe_load(resolve_spec_path("paper_crossdataset").read_text())
    data["rules"] = [r for r in data["rules"] if r["when"].get("method") != "maple"]
    path = tmp_path / "drifted.yaml"
    path.write_text(yaml.safe_dump(data))
    drift = {(c.key, c.resolved, c.official) for c in explain(load_spec(path), ["data.root=/data"]) if c.drift}
    assert drift == {("optim.epochs", 5, 2), ("optim.lr", 0.0035, 0.0026), ("options.prompt_depth", 9, 3)}
    out = subprocess.run([sys.executable, "-m", "dvpt.cli", "sweep", str(path), "--set", "data.root=/data",
                          "--explain"], capture_output=True, text=True)
    assert out.returncode == 1 and "DRIFT crossdataset/maple/imagenet/16shot" in out.stdout
    assert "vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml" in out.stdout


@pytest.mark.parametrize("spec", ["paper_base2novel", "paper_crossdataset", "paper_domaingen", "paper_fewshot"])
def test_explain_flags_a_precision_other_than_the_official_fp16(spec: str) -> None:
    """The drift table checks the precision of every method with official code: fp16 autocast
    (dvpt's everyday fp16) is not the official pure fp16 and shows as drift, dvpt's own row has none."""
    from dvpt.sweep.explain import explain

    checks = [c for c in explain(load_spec(spec), ["data.root=/data", "precision=fp16"]) if c.key == "precision"]
    methods = {c.cell.split("/")[1] for c in checks}
    assert methods == {"zeroshot", "coop", "cocoop", "kgcoop", "prograd", "maple", "promptsrc"}
    assert {(c.resolved, c.official) for c in checks} == {("fp16", "fp16-weights")} and all(c.drift for c in checks)


def test_wall_time_estimate_counts_the_official_training_steps() -> None:
    """benchmarks/paper_wall_time.py: steps per run from the resolved recipe (base half on
    base-to-novel, Dassl's dropped last batch, batch 1 for CoCoOp, nothing for zero-shot)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "paper_wall_time.py"
    spec = importlib.util.spec_from_file_location("paper_wall_time", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.training_steps(resolved("paper_base2novel", "coop", "imagenet", 16)) == (500 * 16 // 32) * 50
    assert script.training_steps(resolved("paper_base2novel", "coop", "eurosat", 16)) == (5 * 16 // 32) * 200
    assert script.training_steps(resolved("paper_base2novel", "cocoop", "oxford_pets", 16)) == 19 * 16 * 10
    assert script.training_steps(resolved("paper_fewshot", "kgcoop", "eurosat", 1)) == 1 * 100  # 10 images < 128
    assert script.training_steps(resolved("paper_crossdataset", "maple", "imagenet", 16)) == (16000 // 4) * 2
    assert script.training_steps(resolved("paper_base2novel", "zeroshot", "dtd", 16)) == 0
    low, high = script.fidelity_step_range(script.FIGURES)
    assert 0 < low <= high < 1.0


@pytest.mark.parametrize("cache, fresh", [(False, True), (True, False)])
def test_session_training_path_sees_a_fresh_crop_per_epoch_in_fidelity_mode(tmp_path, monkeypatch, cache, fresh):
    """Through ``Session.train`` as a paper-spec run takes it: with the cache off (fidelity
    mode) the method sees another crop of the one training image in each epoch; with the
    cache on (one view) it sees the same features every epoch."""
    import numpy as np
    import torch
    from PIL import Image

    from dvpt.data.base import Datum
    from dvpt.engine.session import Session

    rng = np.random.default_rng(0)
    path = tmp_path / "one.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    cfg = from_dict(RunConfig, {"method": "coop", "backbone": "tiny-random", "device": "cpu", "threads": None,
                                "cache": {"enabled": cache, "views": 1},
                                "optim": {"epochs": 3, "batch_size": 1}})
    session = Session(cfg)
    method = session.build_method(["thing", "other"], ["a photo of a {}."])
    seen: list[torch.Tensor] = []
    original = method.losses

    def spy(batch, ctx):
        seen.append((batch.images if batch.images is not None else batch.features).detach().clone())
        return original(batch, ctx)

    monkeypatch.setattr(method, "losses", spy)
    session.train(method, [Datum(str(path), 0, "thing")])
    assert len(seen) == 3
    differ = [not torch.equal(seen[i], seen[i + 1]) for i in range(2)]
    assert differ == [fresh, fresh]


def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fidelity_accuracy_runs_differ_in_the_augmentation_alone_and_docs_show_them() -> None:
    """docs/results/fidelity-accuracy.jsonl: per seed one default and one fidelity run of CoOp
    on the tuning data, the same recipe and precision, 8 cached views against none; the table
    in docs/experiments.md is the one benchmarks/fidelity_accuracy.py prints from them."""
    from pathlib import Path

    from dvpt.experiments.benchmark import read_results

    root = Path(__file__).resolve().parent.parent
    records = read_results(root / "docs" / "results" / "fidelity-accuracy.jsonl")
    seeds = sorted({r["seed"] for r in records})
    assert seeds and len(records) == 2 * len(seeds)
    assert {(r["dataset"], r["method"], r["backbone"], r["hyperparameters"]["precision"], r["lr_scale"])
            for r in records} == {("emoji-travel", "coop", "micro", "fp32", 1.0)}
    for seed in seeds:
        pair = {r["mode"]: r for r in records if r["seed"] == seed}
        assert (pair["default"]["cache_views"], pair["fidelity"]["cache_views"]) == (8, 0)
        assert pair["default"]["hyperparameters"] == pair["fidelity"]["hyperparameters"]
        assert pair["default"]["hyperparameters"]["optim"] | {"lr": None} == {
            **pair["default"]["hyperparameters"]["optim"], "batch_size": 128, "epochs": 10, "warmup_epochs": 0,
            "lr": None}
    doc = (root / "docs" / "experiments.md").read_text()
    begin = "<!-- fidelity accuracy: the table printed by `python benchmarks/fidelity_accuracy.py` -->\n"
    block = doc.split(begin, 1)[1].split("\n<!-- end of fidelity accuracy -->", 1)[0]
    assert block == _script("fidelity_accuracy").table(records), "docs/experiments.md: rebuild the table"
