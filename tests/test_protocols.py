"""Every protocol end to end with tiny-random on fixture trees in the datasets' real layouts."""
from __future__ import annotations

import json

import pytest

import torch

from dvpt.cli import main
from dvpt.data.loading import draft_side, open_image
from dvpt.engine.io import read_json
from dvpt.engine.restore import restore_method
from dvpt.methods import METHODS, Batch
from dvpt.protocols.transfer import parse_target, source_rows
from datasets_fixtures import BUILDERS, WNIDS, subset

COMMON = ["--backbone", "tiny-random", "--epochs", "1", "--set", "cache.views=1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """$DATA holding ImageNet, two of its shifted variants and two other datasets."""
    root = tmp_path_factory.mktemp("DATA")
    for name in ("imagenet", "imagenetv2", "caltech101", "dtd"):
        BUILDERS[name](root)
    subset("imagenet-adversarial", "imagenet-a", [1, 3])(root)
    return root


def train(capsys, *argv) -> int:
    code = main(["train", *COMMON, *argv])
    capsys.readouterr()
    return code


def test_crossdataset_evaluates_each_target_on_its_classes(capsys, data_root, tmp_path):
    out = tmp_path / "xd"
    assert train(capsys, "--method", "coop", "--protocol", "crossdataset", "--dataset", "imagenet",
                 "--root", str(data_root), "--shots", "4", "--targets", "caltech101,dtd", "-o", str(out)) == 0
    m = read_json(out / "metrics.json")
    assert set(m["targets"]) == {"caltech101", "dtd"}
    assert m["target_mean"] == pytest.approx(sum(m["targets"].values()) / 2)
    caltech = read_json(out / "eval" / "caltech101.json")
    assert caltech["classes"] == ["accordion", "airplane", "face", "crocodile head", "leopard"]
    assert caltech["num_images"] == 15
    assert read_json(out / "eval" / "source.json")["classes"] == [n for _, n in WNIDS[:5]]


def test_domaingen_scores_subset_targets_with_matching_rows(capsys, data_root, tmp_path):
    out = tmp_path / "dg"
    assert train(capsys, "--method", "zeroshot", "--protocol", "domaingen", "--dataset", "imagenet",
                 "--root", str(data_root), "--targets", "imagenetv2,imagenet_a", "-o", str(out)) == 0
    a = read_json(out / "eval" / "imagenet_a.json")
    assert a["source_rows"] == [1, 3]
    assert a["classes"] == ["goldfish", "tiger shark"]
    assert len(a["per_class_accuracy"]) == 2
    v2 = read_json(out / "eval" / "imagenetv2.json")
    assert v2["source_rows"] == [0, 1, 2, 3, 4]


def test_domaingen_rows_equal_a_classifier_built_on_the_subset(capsys, data_root, tmp_path):
    """Zero-shot prompts depend only on the class name, so scoring ImageNet-A over the
    ImageNet classifier's matching rows must equal a classifier built from its 2 names."""
    out = tmp_path / "dg0"
    assert train(capsys, "--method", "zeroshot", "--protocol", "domaingen", "--dataset", "imagenet",
                 "--root", str(data_root), "--targets", "imagenet_a", "-o", str(out)) == 0
    direct = tmp_path / "direct"
    assert train(capsys, "--method", "zeroshot", "--protocol", "all", "--dataset", "imagenet_a",
                 "--root", str(data_root), "-o", str(direct)) == 0
    assert read_json(out / "eval" / "imagenet_a.json")["accuracy"] == read_json(direct / "metrics.json")["accuracy"]


def test_fewshot_runs_one_folder_per_shot_count(capsys, data_root, tmp_path):
    out = tmp_path / "fs"
    assert train(capsys, "--method", "coop", "--protocol", "fewshot", "--dataset", "dtd",
                 "--root", str(data_root), "--shots", "1,2", "-o", str(out)) == 0
    m = read_json(out / "metrics.json")
    assert set(m["accuracy_by_shots"]) == {"1", "2"}
    for k in (1, 2):
        child = read_json(out / f"shots_{k}" / "metrics.json")
        assert child["shots"] == k and child["protocol"] == "all"
        assert child["accuracy"] == m["accuracy_by_shots"][str(k)]


def test_base2novel_on_a_standard_layout(capsys, data_root, tmp_path):
    out = tmp_path / "b2n"
    assert train(capsys, "--method", "coop", "--protocol", "base2novel", "--dataset", "caltech101",
                 "--root", str(data_root), "--shots", "2", "-o", str(out)) == 0
    m = read_json(out / "metrics.json")
    assert m["evaluations"][0]["classes"] == ["accordion", "airplane", "face"]
    assert m["evaluations"][1]["classes"] == ["crocodile head", "leopard"]


def test_missing_target_fails_before_training(capsys, data_root, tmp_path):
    out = tmp_path / "bad"
    code = main(["train", *COMMON, "--method", "coop", "--protocol", "crossdataset", "--dataset", "imagenet",
                 "--root", str(data_root), "--targets", "food101", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "food101" in err and "Traceback" not in err
    assert not out.exists()


def test_eval_command_reproduces_the_runs_novel_accuracy(capsys, data_root, tmp_path):
    out = tmp_path / "b2n_eval"
    assert train(capsys, "--method", "coop", "--protocol", "base2novel", "--dataset", "dtd",
                 "--root", str(data_root), "--shots", "2", "-o", str(out)) == 0
    assert main(["eval", str(out), "--subset", "novel"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["accuracy"] == read_json(out / "metrics.json")["novel"]



@pytest.mark.parametrize("protocol", ["crossdataset", "domaingen", "transfer", "fewshot"])
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_on_every_transfer_protocol(capsys, data_root, tmp_path, method, protocol):
    """base2novel and all are covered per method in the method tests; these are the rest."""
    out = tmp_path / f"{method}-{protocol}"
    extra = {"crossdataset": ["--dataset", "imagenet", "--targets", "dtd", "--shots", "1"],
             "domaingen": ["--dataset", "imagenet", "--targets", "imagenetv2,imagenet_a", "--shots", "1"],
             "transfer": ["--dataset", "imagenet", "--targets", "dtd,imagenetv2", "--shots", "1"],
             "fewshot": ["--dataset", "dtd", "--shots", "1,2"]}[protocol]
    assert train(capsys, "--method", method, "--protocol", protocol, "--root", str(data_root),
                 "--set", "optim.batch_size=4", *extra, "-o", str(out)) == 0
    m = read_json(out / "metrics.json")
    accuracies = [e["accuracy"] for e in m["evaluations"]]
    assert accuracies and all(0 <= a <= 100 for a in accuracies)
    if protocol == "fewshot":
        for shots in (1, 2):
            assert m["accuracy_by_shots"][str(shots)] == pytest.approx(reference_accuracy(out / f"shots_{shots}", "dtd"),
                                                                        abs=1e-4)
    else:
        if protocol == "transfer":  # one run, both tables: dtd over its own classes, ImageNet-V2 over ImageNet's rows
            assert (m["crossdataset"], m["domaingen"]) == ({"dtd": m["targets"]["dtd"]},
                                                           {"imagenetv2": m["targets"]["imagenetv2"]})
            assert m["crossdataset_mean"] == m["targets"]["dtd"] and 0 <= m["train_acc"] <= 100
        for target, acc in m["targets"].items():
            shared = protocol == "domaingen" or target in m.get("domaingen", {})
            assert acc == pytest.approx(reference_accuracy(out, target, shared), abs=1e-4), target


def reference_accuracy(run_dir, target: str, shared_labels: bool = False) -> float:
    """Top-1 accuracy of the run's tuned method on ``target``'s test images, recomputed here
    image by image from the run folder (no feature cache, no evaluation loop): with
    ``shared_labels`` over the source classifier's matching rows, else over the target's classes."""
    session, method, _ = restore_method(run_dir)
    name, options = parse_target(target)
    splits = session.load_dataset(name, options={**session.cfg.data.options, **options})
    if shared_labels:
        rows = source_rows(session.load_dataset(), splits)
    else:
        method.set_classnames(splits.classnames, splits.templates)
        rows = list(range(len(splits.classnames)))
    transform = session.backbone.eval_transform()
    correct = 0
    method.eval()
    with torch.no_grad():
        for item in splits.test:
            image = transform(open_image(item.path, draft_side(transform)))[None]
            logits = method.logits(Batch(labels=torch.tensor([item.label]), images=image))[0, rows]
            correct += int(logits.argmax()) == item.label
    return 100.0 * correct / len(splits.test)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_on_the_offline_benchmark_with_micro(capsys, tmp_path, method):
    out = tmp_path / method
    code = main(["train", "--method", method, "--backbone", "micro", "--dataset", "emoji-activities",
                 "--protocol", "base2novel", "--shots", "2", "--epochs", "1", "--batch-size", "16",
                 "--set", "cache.views=1", "-o", str(out)])
    capsys.readouterr()
    assert code == 0
    m = read_json(out / "metrics.json")
    # 43 base / 42 novel classes: chance is ~2.4%; micro keeps every method far above it
    assert m["base"] > 15 and m["novel"] > 15


@pytest.mark.slow
def test_domaingen_color_to_line_on_the_emoji_benchmark(capsys, tmp_path):
    out = tmp_path / "dg"
    code = main(["train", "--method", "coop", "--backbone", "micro", "--dataset", "emoji-activities",
                 "--protocol", "domaingen", "--shots", "2", "--epochs", "1", "--set", "cache.views=1", "-o", str(out)])
    capsys.readouterr()
    assert code == 0
    line = read_json(out / "eval" / "emoji-activities_line.json")
    source = read_json(out / "eval" / "source.json")
    # the line domain covers a subset of the color classes, scored with the source prompt's rows
    assert set(line["classes"]) <= set(source["classes"]) and len(line["source_rows"]) == len(line["classes"])


def test_zeroshot_ensemble_takes_each_targets_dataset_name(capsys, data_root, tmp_path, monkeypatch):
    """The transfer protocols hand each target's name to the method, as the official
    evaluation runs with the target's DATASET.NAME: ZeroshotCLIP2's ensemble is the 7 select
    templates on the ImageNet source and 8 (the custom one added) on ImageNet-A."""
    from dvpt.methods import zeroshot

    seen: list[tuple[str, int]] = []
    original = zeroshot.select_templates

    def spy(templates, which, dataset=""):
        chosen = original(templates, which, dataset)
        seen.append((dataset, len(chosen)))
        return chosen

    monkeypatch.setattr(zeroshot, "select_templates", spy)
    out = tmp_path / "dg-ensemble"
    assert train(capsys, "--method", "zeroshot", "--protocol", "domaingen", "--dataset", "imagenet",
                 "--root", str(data_root), "--targets", "imagenet_a", "--set", "options.templates=ensemble",
                 "-o", str(out)) == 0
    assert ("imagenet", 7) in seen and ("imagenet_a", 8) in seen
    assert {d for d, _ in seen} == {"imagenet", "imagenet_a"}
