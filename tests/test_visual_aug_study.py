"""The visual-augmentation study scripts (benchmarks/): the gradient probe measures what it says
without changing training, and the ablation rows are distinct configurations."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dvpt.backbones import load_backbone
from dvpt.losses.mi import infonce_loss
from dvpt.methods.base import Batch
from dvpt.methods.dvpt import DVPT, DVPTOptions

from conftest import first_step

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("tiny-random", "cpu")


def make(backbone, **options) -> DVPT:
    torch.manual_seed(0)
    opts = DVPTOptions(**({"infer": "soft"} | options))
    return DVPT(backbone, ["red", "green", "blue"], ["a photo of a {}."], opts)


def batch(backbone) -> Batch:
    gen = torch.Generator().manual_seed(0)
    return Batch(labels=torch.arange(12) % 3, features=F.normalize(torch.randn(12, backbone.embed_dim, generator=gen), dim=-1))


def test_gradient_probe_cosine_equals_a_direct_computation_and_leaves_the_loss_unchanged(backbone, one_thread):
    diag = _load("diagnose_visual_aug")
    plain, probed = make(backbone, mi="infonce", lambda_mi=0.5, visual_aug="none"), make(
        backbone, mi="infonce", lambda_mi=0.5, visual_aug="none")
    probe = diag.GradientProbe(probed)
    b = batch(backbone)
    assert torch.equal(probed.losses(b, first_step())["loss"], plain.losses(b, first_step())["loss"])
    # the reference: CE and the weighted MI term built by hand, gradients w.r.t. the context
    soft = plain.soft_features()
    ce = F.cross_entropy(plain.logit_scale * b.features @ soft.t(), b.labels)
    mi = 0.5 * infonce_loss(soft, plain.hand_features(), plain.options.mi_temperature)
    g_ce, = torch.autograd.grad(ce, plain.prompt_learner.ctx, retain_graph=True)
    g_mi, = torch.autograd.grad(mi, plain.prompt_learner.ctx)
    expected = float(F.cosine_similarity(g_ce.flatten(), g_mi.flatten(), dim=0))
    row = probe.summary()[0]
    assert row["epoch"] == 1 and row["cos_ce_mi_ctx"] == pytest.approx(expected, abs=1e-4)
    assert row["norm_ratio_mi_ctx"] == pytest.approx(float(g_mi.norm() / g_ce.norm()), rel=1e-3)
    assert row["negative_share_ce_mi_ctx"] == float(expected < 0)


def test_gradient_probe_logs_the_proto_alignment_term(backbone, one_thread):
    diag = _load("diagnose_visual_aug")
    method = make(backbone, mi="none", visual_aug="proto")
    probe = diag.GradientProbe(method)
    with torch.no_grad():  # as after some training: a zero last layer has a zero alignment gradient
        method.proto.net[2].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    b = batch(backbone)
    method.losses(b, first_step())  # first step: the bank fills, the alignment term exists
    method.losses(b, first_step())
    keys = probe.summary()[0]
    assert "cos_ce_aug_all" in keys and "cos_ce_mi_ctx" not in keys


def test_ablation_rows_are_distinct_configurations_and_start_from_coop():
    study = _load("visual_aug_study")
    for default in study.AUGS:
        rows = study.ablation_rows(default)
        assert rows["CE only (= CoOp)"] == {"mi": "none", "visual_aug": "none", "infer": "soft"}
        assert rows["full (defaults)"] == {"visual_aug": default}
        full = {"visual_aug": "proto", "mi": "infonce", "infer": "ensemble"}
        assert rows["zero-shot"] == {"method": "zeroshot"}
        configs = [tuple(sorted((full | o).items())) for o in rows.values()]
        assert len(configs) == len(set(configs))
    assert "full - aug" not in study.ablation_rows("none")  # it would be the full row again


def test_study_tables_pick_the_highest_mean_hm_and_pair_rows_by_dataset_and_seed():
    from dvpt.experiments.benchmark import render_results, row_table, selected_row

    def rec(row, dataset, seed, hm):
        return {"row": row, "dataset": dataset, "seed": seed, "base": hm, "novel": hm, "hm": hm, "train_acc": 50.0}

    records = [rec("a", "d", 1, 50.0), rec("a", "d", 2, 52.0), rec("b", "d", 1, 51.0), rec("b", "d", 2, 53.5)]
    assert selected_row(records) == "b"
    table = row_table(records, "b")
    assert table.startswith("| Row |")
    assert "| a | 2 | 51.00 [50.00, 52.00] |" in table and "-1.25 [-1.50, -1.00]* (2 pairs)" in table
    block = render_results({"visual-aug-select": records, "ablation": [{**r, "row": "full (defaults)" if r["row"] == "b"
                                                                       else r["row"]} for r in records]})
    assert "default: `b`" in block and "### dvpt ablation (reported data)" in block


@pytest.mark.parametrize("budget", ["offline", "rule"])
def test_study_budget_is_the_pinned_one_or_the_benchmark_rule_with_the_tuned_scale(budget, tmp_path, monkeypatch):
    import json

    from dvpt.experiments.benchmark import anchor_lr, load_plan

    study = _load("visual_aug_study")
    seen = []

    def fake_training(cfg, folder):
        seen.append(cfg)
        return {"base": 50.0, "novel": 40.0, "hm": 44.4, "train_acc": 60.0, "seconds": 1.0}

    monkeypatch.setattr(study, "run_training", fake_training)
    tuning = tmp_path / "tuning.jsonl"
    tuning.write_text("".join(json.dumps({"protocol": "base2novel", "dataset": "emoji-travel", "domain": "color",
                                          "method": "dvpt", "seed": 1, "shots": 16, "lr_scale": s, "hm": hm}) + "\n"
                              for s, hm in [(1.0, 40.0), (2.0, 41.0), (0.5, 39.0)]))
    study.run_study("ablation", {"full (defaults)": {"visual_aug": "feature"}}, ["emoji-activities"], [1],
                    tuning=False, output=tmp_path / "out", budget=budget,
                    scales_from=tuning if budget == "rule" else None)
    (cfg,) = seen
    rule = load_plan()
    if budget == "offline":
        assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.lr) == (5, 64, 0.05)
    else:
        assert (cfg.optim.epochs, cfg.optim.batch_size) == (rule.epochs, rule.batch_size)
        assert cfg.optim.lr == pytest.approx(2.0 * anchor_lr("dvpt", rule.batch_size, rule.epochs))
        assert cfg.precision == rule.precision
    assert cfg.options["visual_aug"] == "feature"
