"""`dvpt benchmark`: one JSON line per finished run, resumable, intervals from the lines alone."""
from __future__ import annotations

import json
import statistics

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
        assert r["hyperparameters"]["optim"]["epochs"] == 2 and r["hyperparameters"]["optim"]["lr"] == 0.05
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
    with pytest.raises(ConfigError, match="protocol 'fewshot' is not available"):
        load_plan(protocol="fewshot")
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

    from dvpt.experiments.benchmark import BEGIN, END, read_result_dir, render_results

    root = Path(__file__).resolve().parent.parent
    block = render_results(read_result_dir(root / "docs" / "results"))
    doc = (root / "docs" / "results.md").read_text()
    assert BEGIN in doc and END in doc
    committed = BEGIN + doc.split(BEGIN, 1)[1].split(END, 1)[0] + END
    assert committed == block, "docs/results.md is stale: run `dvpt report docs/results --update-doc docs/results.md`"


def test_update_doc_replaces_only_the_marked_block(tmp_path):
    from dvpt.experiments.benchmark import BEGIN, END, update_doc

    doc = tmp_path / "r.md"
    doc.write_text(f"intro\n\n{BEGIN}\nold\n{END}\n\noutro\n")
    assert update_doc(doc, f"{BEGIN}\nnew\n{END}")
    assert doc.read_text() == f"intro\n\n{BEGIN}\nnew\n{END}\n\noutro\n"
    assert not update_doc(doc, f"{BEGIN}\nnew\n{END}")
