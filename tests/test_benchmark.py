"""`dvpt benchmark`: one JSON line per finished run, resumable, intervals from the lines alone."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from dvpt.cli import main
from dvpt.errors import ConfigError, DataError
from dvpt.experiments.benchmark import (bootstrap_ci, load_plan, paired_differences, read_results,
                                        summary_table)


@pytest.mark.slow
def test_quick_benchmark_writes_one_line_per_run_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--quick", "-o", str(out)]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted((r["method"], r["seed"]) for r in records) == sorted(
        (m, s) for m in ("zeroshot", "coop", "dvpt") for s in (1, 2))
    for r in records:
        assert r["protocol"] == "base2novel" and r["dataset"] == "emoji-activities" and r["domain"] == "color"
        assert r["shots"] == 16 and r["test_per_class"] == 10
        assert 0 < r["base"] <= 100 and 0 < r["novel"] <= 100 and 0 < r["train_acc"] <= 100
        assert r["hm"] == pytest.approx(2 * r["base"] * r["novel"] / (r["base"] + r["novel"]))
        assert r["hyperparameters"]["optim"]["epochs"] == 2 and r["hyperparameters"]["optim"]["lr"] == pytest.approx(0.05)
    by = {(r["method"], r["seed"]): r for r in records}
    # 43 base classes: chance is ~2%; zero-shot is far above it and does not depend on the seed's training
    assert by[("zeroshot", 1)]["base"] > 30
    assert by[("zeroshot", 1)]["base"] == by[("zeroshot", 2)]["base"]
    # tuning on the base classes fits them at least as well as the frozen prompt
    assert by[("coop", 1)]["train_acc"] >= by[("zeroshot", 1)]["train_acc"]
    table = capsys.readouterr().out
    assert "| coop | 2 |" in table and (out / "summary.md").read_text().strip() == table.strip()
    # a second call finds every line and runs nothing: the file is unchanged
    assert main(["benchmark", "--quick", "-o", str(out)]) == 0
    assert (out / "results.jsonl").read_text().splitlines() == lines


def test_bootstrap_interval_brackets_the_mean_and_collapses_without_spread():
    assert bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    assert bootstrap_ci([7.0]) == (7.0, 7.0, 7.0)
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    mean, lo, hi = bootstrap_ci(values)
    assert mean == statistics.fmean(values)
    assert min(values) <= lo < mean < hi <= max(values)
    # the same seed gives the same interval
    assert bootstrap_ci(values) == (mean, lo, hi)


def test_paired_differences_match_dataset_and_seed():
    records = [
        {"dataset": "a", "seed": 1, "method": "dvpt", "hm": 60.0, "base": 1, "novel": 1},
        {"dataset": "a", "seed": 1, "method": "coop", "hm": 57.0, "base": 1, "novel": 1},
        {"dataset": "a", "seed": 2, "method": "dvpt", "hm": 61.0, "base": 1, "novel": 1},
        {"dataset": "a", "seed": 2, "method": "coop", "hm": 59.0, "base": 1, "novel": 1},
        {"dataset": "b", "seed": 1, "method": "coop", "hm": 10.0, "base": 1, "novel": 1},  # no dvpt pair
    ]
    assert paired_differences(records, "coop", "hm") == [-3.0, -2.0]
    table = summary_table(records)
    # both differences are negative, so the interval excludes zero and is marked
    assert "-2.50 [-3.00, -2.00]* (2 pairs)" in table
    # a single pair gets no interval and no mark
    assert "(1 pair)" in summary_table(records[:2])


def test_broken_results_line_names_file_and_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"method": "coop"}\n{"method": \n')
    with pytest.raises(DataError, match=r"results.jsonl:2 .*delete that line"):
        read_results(path)


def test_plan_errors_are_one_line_user_errors():
    with pytest.raises(ConfigError, match="protocol 'nosuch' is not available"):
        load_plan(protocol="nosuch")
    with pytest.raises(ConfigError, match="unknown method"):
        load_plan(methods=["nosuch"])
    plan = load_plan()
    assert len(plan.datasets) >= 7 and plan.seeds == [1, 2, 3] and plan.test_per_class == 50
    tuning = load_plan(tuning=True)
    assert not set(tuning.datasets) & set(plan.datasets)


def test_test_per_class_must_be_positive(tmp_path):
    from dvpt.data.emoji import load_emoji

    with pytest.raises(DataError, match="test_per_class must be a positive integer"):
        load_emoji("emoji-activities", root=tmp_path, test_per_class=0)


def test_committed_results_doc_equals_the_tables_rebuilt_from_the_result_files():
    from pathlib import Path

    from dvpt.experiments.benchmark_tables import BEGIN, END, read_result_dir, render_results

    root = Path(__file__).resolve().parent.parent
    block = render_results(read_result_dir(root / "docs" / "results"))
    doc = (root / "docs" / "results.md").read_text()
    assert BEGIN in doc and END in doc
    committed = BEGIN + doc.split(BEGIN, 1)[1].split(END, 1)[0] + END
    assert committed == block, "docs/results.md is stale: run `dvpt report docs/results --update-doc docs/results.md`"


def test_update_doc_replaces_only_the_marked_block(tmp_path):
    from dvpt.experiments.benchmark_tables import BEGIN, END, update_doc

    doc = tmp_path / "r.md"
    doc.write_text(f"intro\n\n{BEGIN}\nold\n{END}\n\noutro\n")
    assert update_doc(doc, f"{BEGIN}\nnew\n{END}")
    assert doc.read_text() == f"intro\n\n{BEGIN}\nnew\n{END}\n\noutro\n"
    assert not update_doc(doc, f"{BEGIN}\nnew\n{END}")


def _tuning_line(method, scale, hm, seed=1):
    return {"protocol": "base2novel", "dataset": "emoji-travel", "domain": "color", "method": method, "seed": seed,
            "shots": 16, "lr_scale": scale, "hm": hm, "base": hm, "novel": hm}


def test_anchor_lr_carries_each_published_recipe_to_the_common_batch_and_epochs():
    from dvpt.experiments.benchmark import anchor_lr

    # CoOp: 0.002 at batch 32 for 200 epochs -> x4 for batch 128, x20 for 10 epochs instead of 200
    assert anchor_lr("coop", 128, 10) == pytest.approx(0.002 * 4 * 20)
    # MaPLe: 0.0035 at batch 4 for 5 epochs -> x32 for the batch, x0.5 for twice the epochs
    assert anchor_lr("maple", 128, 10) == pytest.approx(0.0035 * 32 * 0.5)
    # KgCoOp already uses batch 128: only the epochs (100 -> 10) move it
    assert anchor_lr("kgcoop", 128, 10) == pytest.approx(0.002 * 10)
    assert anchor_lr("zeroshot", 128, 10) is None


def test_plan_rule_gives_every_method_the_same_steps_and_its_own_lr(tmp_path):
    from dvpt.experiments.benchmark import BenchmarkPlan, anchor_lr, run_config

    plan = load_plan()
    plan = BenchmarkPlan(**{**plan.__dict__, "lr_scale": {"coop": 2.0}})
    for method in ("coop", "kgcoop", "maple", "promptsrc", "dvpt"):
        cfg = run_config(plan, method, "emoji-activities", 1, tmp_path)
        assert (cfg.optim.batch_size, cfg.optim.epochs, cfg.optim.warmup_epochs) == (plan.batch_size, plan.epochs, 0)
        assert cfg.precision == plan.precision
        scale = 2.0 if method == "coop" else 1.0
        assert cfg.optim.lr == pytest.approx(anchor_lr(method, plan.batch_size, plan.epochs) * scale)
    # a grid trial replaces the chosen scale; the budget curve keeps the lr and moves only the epochs
    assert run_config(plan, "coop", "emoji-activities", 1, tmp_path, scale=0.5).optim.lr == pytest.approx(
        anchor_lr("coop", plan.batch_size, plan.epochs) * 0.5)
    curve = run_config(plan, "coop", "emoji-activities", 1, tmp_path, extra=["optim.epochs=40"])
    assert curve.optim.epochs == 40 and curve.optim.lr == pytest.approx(anchor_lr("coop", 128, plan.epochs) * 2)


def test_scales_are_chosen_by_mean_tuning_hm_and_an_unfinished_grid_is_refused(tmp_path):
    from dvpt.experiments.benchmark import chosen_scales, with_scales_from

    lines = [_tuning_line("coop", 1.0, 50.0), _tuning_line("coop", 2.0, 52.0), _tuning_line("coop", 0.5, 49.0),
             _tuning_line("dvpt", 1.0, 55.0), _tuning_line("dvpt", 2.0, 55.0), _tuning_line("dvpt", 0.5, 54.0),
             _tuning_line("coop", 2.0, 46.0, seed=2), _tuning_line("coop", 1.0, 50.0, seed=2)]
    # coop: x2 has mean 49 over two seeds, x1 has 50; dvpt ties x1 and x2: the smaller wins
    assert chosen_scales(lines) == {"coop": 1.0, "dvpt": 1.0}
    path = tmp_path / "tuning.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    plan = with_scales_from(load_plan(methods=["zeroshot", "coop", "dvpt"]), path)
    assert plan.lr_scale == {"coop": 1.0, "dvpt": 1.0}
    with pytest.raises(DataError, match="no tuning runs of kgcoop"):
        with_scales_from(load_plan(methods=["coop", "kgcoop"]), path)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines[:4]))
    with pytest.raises(DataError, match="same number of scales"):
        with_scales_from(load_plan(methods=["coop", "dvpt"]), path)


def _run(method, dataset, seed, base, novel):
    return {"protocol": "base2novel", "dataset": dataset, "domain": "color", "method": method, "seed": seed,
            "shots": 16, "base": base, "novel": novel, "hm": 2 * base * novel / (base + novel), "train_acc": base,
            "seconds": 10.0, "lr_scale": None if method == "zeroshot" else 1.0,
            "hyperparameters": {"optim": {"lr": 0.16, "batch_size": 128, "epochs": 10, "warmup_epochs": 0},
                                "options": {}, "precision": "bf16"}}


def _signature_records():
    records = []
    for dataset in ("a", "b"):
        for seed in (1, 2, 3):
            records += [_run("zeroshot", dataset, seed, 60.0, 60.0),
                        _run("coop", dataset, seed, 66.0 + seed, 50.0 - seed),
                        _run("kgcoop", dataset, seed, 63.0 + seed, 57.0 - seed),
                        _run("dvpt", dataset, seed, 64.0, 59.0 + seed)]
    return records


def test_signature_table_pairs_runs_against_zeroshot_and_coop():
    from dvpt.experiments.benchmark_tables import signature_table

    table = signature_table(_signature_records())
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert "zeroshot" not in rows
    # CoOp: base +8 (66+2 - 60 on average), novel -12: both intervals exclude zero
    assert "+8.00 [" in rows["coop"] and "]* (6 pairs)" in rows["coop"] and "-12.00 [" in rows["coop"]
    # KgCoOp loses 5 novel points against zero-shot, 7 fewer than CoOp
    assert "-5.00 [" in rows["kgcoop"] and "+7.00 [+7.00, +7.00]* (6 pairs)" in rows["kgcoop"]


def test_hyperparameter_and_time_tables_come_from_the_runs():
    from dvpt.experiments.benchmark_tables import hyperparameter_table, time_table

    records = _signature_records()
    table = hyperparameter_table(records)
    assert "| coop | 0.002, 32, 200 | 1 | 0.16 | 128 | 10 | 0 | bf16 |" in table
    assert "| zeroshot | — | — | — | — | 0 | — | bf16 |" in table
    assert "| all | 24 | | 4.0 |" in time_table(records)


def test_update_doc_writes_tables_figures_and_the_readme_summary(tmp_path):
    from dvpt.experiments.benchmark_tables import README_BEGIN, README_END

    results = tmp_path / "results"
    results.mkdir()
    (results / "base2novel.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _signature_records()))
    curve = [{**_run(m, "t", 1, 60.0 + e, 50.0 - e), "epochs": e} for m in ("coop", "dvpt") for e in (5, 10)]
    (results / "budget-curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    doc, readme = tmp_path / "results.md", tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_BEGIN}\nold\n{README_END}\n\nrest\n")
    assert main(["report", str(results), "--update-doc", str(doc), "--update-readme", str(readme)]) == 0
    text = doc.read_text()
    assert "### The literature's signature" in text and "### Budget curve" in text
    for name in ("benchmark-base-novel.png", "benchmark-budget-curve.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = readme.read_text()
    assert summary.startswith("# x\n\n" + README_BEGIN) and summary.endswith(README_END + "\n\nrest\n")
    assert "| kgcoop | 6 |" in summary and "a (seeds 1,2,3), b (seeds 1,2,3)" in summary
    # the same results give the same figure bytes
    before = (tmp_path / "figures" / "benchmark-base-novel.png").read_bytes()
    assert main(["report", str(results), "--update-doc", str(doc)]) == 0
    assert (tmp_path / "figures" / "benchmark-base-novel.png").read_bytes() == before


def test_committed_readme_summary_equals_the_one_rebuilt_from_the_result_files():
    from pathlib import Path

    from dvpt.experiments.benchmark_tables import README_BEGIN, README_END, read_result_dir, render_readme

    root = Path(__file__).resolve().parent.parent
    block = render_readme(read_result_dir(root / "docs" / "results"))
    readme = (root / "README.md").read_text()
    assert README_BEGIN in readme and README_END in readme
    committed = README_BEGIN + readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0] + README_END
    assert committed == block, "README's benchmark table is stale: run `dvpt report docs/results --update-readme README.md`"


@pytest.mark.slow
def test_worker_pool_writes_the_same_lines_as_one_process(tmp_path, capsys):
    # zero-shot only: nothing trains, so the pool's bookkeeping is what is measured here
    args = ["benchmark", "--quick", "--methods", "zeroshot"]
    assert main([*args, "-o", str(tmp_path / "one")]) == 0
    assert main([*args, "--workers", "2", "-o", str(tmp_path / "pool")]) == 0
    one = sorted(read_results(tmp_path / "one" / "results.jsonl"), key=lambda r: r["seed"])
    pool = sorted(read_results(tmp_path / "pool" / "results.jsonl"), key=lambda r: r["seed"])
    assert [r["seed"] for r in pool] == [1, 2]
    for a, b in zip(one, pool):
        assert (a["base"], a["novel"], a["hm"], a["hyperparameters"]) == (b["base"], b["novel"], b["hm"], b["hyperparameters"])
    assert main([*args, "--workers", "0", "-o", str(tmp_path / "none")]) == 2
    assert "--workers 0: give 1 or more" in capsys.readouterr().err


def test_the_presets_lr_scales_are_the_ones_the_committed_tuning_grid_chooses():
    from dvpt.experiments.benchmark import chosen_scales, read_results

    docs = Path(__file__).resolve().parents[1] / "docs" / "results" / "tuning.jsonl"
    lines = read_results(docs)
    plan = load_plan()
    assert len(lines) == len(plan.lr_grid) * len([m for m in plan.methods if m != "zeroshot"])
    assert plan.lr_scale == chosen_scales(lines)
