"""`dvpt benchmark --protocol crossdataset|domaingen|fewshot`: the transfer and few-shot runs and their tables."""
from __future__ import annotations

import json
import random
import statistics

import pytest

from dvpt.cli import main
from dvpt.errors import ConfigError, DataError
from dvpt.experiments.benchmark import load_plan, plan_jobs, read_results
from dvpt.experiments.benchmark_tables import (BEGIN, END, bootstrap_ci, fewshot_difference_table, fewshot_table,
                                               render_results, transfer_table)

TRANSFER_KEYS = {"protocol", "dataset", "domain", "method", "seed", "shots", "test_per_class", "backbone", "source",
                 "crossdataset", "crossdataset_mean", "domaingen", "domaingen_mean", "train_acc", "seconds",
                 "lr_scale", "hyperparameters"}
FEWSHOT_KEYS = {"protocol", "dataset", "domain", "method", "seed", "shots", "test_per_class", "backbone", "accuracy",
                "train_acc", "seconds", "lr_scale", "hyperparameters"}


# ---- plans -----------------------------------------------------------------------------------
def test_full_plans_follow_the_preset_and_share_one_transfer_run():
    cross, dg = load_plan(protocol="crossdataset"), load_plan(protocol="domaingen")
    assert plan_jobs(cross) == plan_jobs(dg)  # one training run gives both tables
    jobs = plan_jobs(cross)
    assert len(jobs) == len(cross.methods) * len(cross.seeds) == 21
    assert {j.dataset for j in jobs} == {"emoji-animals"} and {j.shots for j in jobs} == {16}
    assert "emoji-travel" not in cross.crossdataset_targets + [cross.transfer_source]  # the tuning group
    assert cross.domaingen_targets == ["emoji-animals@line", "emoji-animals@color?difficulty=[0.8,1.0]"]
    few = load_plan(protocol="fewshot")
    jobs = plan_jobs(few)
    trained = [m for m in few.methods if m != "zeroshot"]
    # zero-shot once per (dataset, seed); every trained method at every shot count
    assert len(jobs) == len(few.fewshot_datasets) * len(few.seeds) * (1 + len(trained) * len(few.fewshot_shots)) == 279
    assert {j.shots for j in jobs if j.method == "zeroshot"} == {0}
    assert few.fewshot_shots == [1, 2, 4, 8, 16] and few.batch_size == 128 and few.epochs == 10
    every = plan_jobs(load_plan(protocol="all"))
    assert len(every) == 147 + 21 + 279
    quick = load_plan(quick=True, protocol="all")
    assert [len([j for j in plan_jobs(quick) if j.kind == k]) for k in ("base2novel", "transfer", "fewshot")] == [6, 6, 10]


def test_datasets_flag_is_refused_outside_base2novel(capsys):
    with pytest.raises(ConfigError, match="--datasets picks base-to-novel groups"):
        load_plan(protocol="fewshot", datasets=["emoji-food"])
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark", "--protocol", "transfer", "-o", "unused"])
    assert exit_.value.code == 2
    assert "invalid choice: 'transfer'" in capsys.readouterr().err


def test_lr_grid_and_budget_curve_stay_on_base2novel(tmp_path):
    from dvpt.experiments.benchmark import run_budget_curve, run_lr_grid

    plan = load_plan(quick=True, protocol="fewshot")
    with pytest.raises(ConfigError, match="--lr-grid runs on base-to-novel only"):
        run_lr_grid(plan, tmp_path)
    with pytest.raises(ConfigError, match="--epochs runs on base-to-novel only"):
        run_budget_curve(plan, [1], tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


# ---- targets and the difficulty option --------------------------------------------------------
def test_targets_carry_reader_options():
    from dvpt.protocols.transfer import eval_name, parse_target

    assert parse_target("emoji-animals@line") == ("emoji-animals", {"domain": "line"})
    assert parse_target("emoji-animals@color?difficulty=[0.8,1.0]") == (
        "emoji-animals", {"domain": "color", "difficulty": [0.8, 1.0]})
    assert parse_target("caltech101") == ("caltech101", {})
    assert eval_name("emoji-animals@line") == "emoji-animals_line"
    assert eval_name("emoji-animals@color?difficulty=[0.8,1.0]") == "emoji-animals_color_difficulty_0.8_1.0"
    with pytest.raises(DataError, match="is not key=value"):
        parse_target("emoji-animals@color?difficulty")


def test_difficulty_option_is_checked_and_keys_its_own_cache_folder(tmp_path):
    from dataclasses import replace

    from dvpt.data.emoji import Difficulty, RenderRecipe, load_emoji, parse_difficulty

    assert parse_difficulty([0.8, 1]) == Difficulty(0.8, 1.0)
    for bad in ([0.9, 0.8], [0.5], "hard", [0, 1.5], [True, 1]):
        with pytest.raises(DataError, match=r"difficulty must be \[low, high\].*e.g. difficulty: \[0.8, 1.0\]"):
            parse_difficulty(bad)
    with pytest.raises(DataError, match="difficulty must be"):
        load_emoji("emoji-activities", root=tmp_path, difficulty=[1.0, 0.2])
    assert not list(tmp_path.iterdir())  # refused before rendering anything
    default = RenderRecipe()
    assert default.key() == "v1-dd0239e8"  # the renders already cached keep their folder
    assert replace(default, difficulty=parse_difficulty([0.6, 1.0])).key() == default.key()
    assert replace(default, difficulty=Difficulty(0.8, 1.0)).key() != default.key()


# ---- tables from synthetic result lines ---------------------------------------------------------
def _transfer_line(method, seed, source, cross, shift):
    return {"protocol": "transfer", "dataset": "emoji-animals", "domain": "color", "method": method, "seed": seed,
            "shots": 16, "source": source, "crossdataset": cross, "crossdataset_mean": statistics.fmean(cross.values()),
            "domaingen": shift, "domaingen_mean": statistics.fmean(shift.values()), "train_acc": 70.0,
            "seconds": 10.0}


def _transfer_records():
    records = []
    for seed in (1, 2, 3, 4):
        for method, offset in (("zeroshot", 0.0), ("coop", -3.0), ("dvpt", 1.0)):
            records.append(_transfer_line(method, seed, 60.0 + seed + offset,
                                          {"emoji-food@color": 50.0 + offset + seed, "emoji-people@color": 40.0 + offset},
                                          {"emoji-animals@line": 20.0 + offset * seed}))
    return records


def _direct_interval(values, resamples=2000, seed=0):
    """The 95% percentile bootstrap written out: the reference the tables are checked against."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return means[50], means[1950]


def _row(table, method):
    return next(line for line in table.splitlines() if line.startswith(f"| {method} |")).split(" | ")


def test_transfer_tables_give_the_mean_its_interval_and_the_paired_difference():
    records = _transfer_records()
    table = transfer_table(records, "crossdataset")
    assert table.splitlines()[0].startswith("| Method | Runs | Source | `emoji-food@color` | `emoji-people@color` | Mean |")
    coop = _row(table, "coop")
    means = [statistics.fmean([50.0 - 3 + s, 37.0]) for s in (1, 2, 3, 4)]
    lo, hi = _direct_interval(means)
    assert coop[1] == "4" and coop[3] == f"{statistics.fmean(50.0 - 3 + s for s in (1, 2, 3, 4)):.2f}"
    assert coop[5] == f"{statistics.fmean(means):.2f} [{lo:.2f}, {hi:.2f}]"
    # coop - dvpt on the same seed is -4 on both targets every time: no spread, interval excludes zero
    assert coop[-1].rstrip(" |") == "-4.00 [-4.00, -4.00]* (4 pairs)"
    assert _row(table, "dvpt")[-1].rstrip(" |") == "—"
    shift = _row(transfer_table(records, "domaingen"), "coop")
    diffs = [-4.0 * s for s in (1, 2, 3, 4)]  # (20 - 3s) - (20 + s)
    mean, dlo, dhi = bootstrap_ci(diffs)
    assert mean == -10.0 and (dlo, dhi) == _direct_interval(diffs)
    assert shift[-1].rstrip(" |") == f"{mean:+.2f} [{dlo:+.2f}, {dhi:+.2f}]* (4 pairs)"


def _fewshot_records():
    records = []
    for dataset in ("emoji-food", "emoji-smileys"):
        for seed in (1, 2, 3):
            records.append({"protocol": "fewshot", "dataset": dataset, "method": "zeroshot", "seed": seed, "shots": 0,
                            "accuracy": 55.0 + (dataset == "emoji-food")})
            for shots in (1, 2, 4):
                for method, gain in (("coop", 1.0), ("dvpt", 2.0)):
                    records.append({"protocol": "fewshot", "dataset": dataset, "method": method, "seed": seed,
                                    "shots": shots, "accuracy": 50.0 + gain * shots + seed})
    return records


def test_fewshot_table_averages_over_datasets_and_seeds_with_intervals():
    records = _fewshot_records()
    table = fewshot_table(records)
    assert table.splitlines()[0] == "| Method | zero-shot | 1 shot | 2 shots | 4 shots |"
    values = [50.0 + 1.0 * 2 + seed for _ in range(2) for seed in (1, 2, 3)]  # coop at 2 shots
    lo, hi = _direct_interval(values)
    assert _row(table, "coop")[3] == f"{statistics.fmean(values):.2f} [{lo:.2f}, {hi:.2f}]"
    zlo, zhi = _direct_interval([56.0] * 3 + [55.0] * 3)
    assert _row(table, "zeroshot")[1:] == [f"55.50 [{zlo:.2f}, {zhi:.2f}]", "—", "—", "— |"]
    diffs = fewshot_difference_table(records)
    # coop - dvpt = -shots on every (dataset, seed) pair; zero-shot has no shot count to pair on
    assert _row(diffs, "coop")[1:] == ["-1.00 [-1.00, -1.00]* (6 pairs)", "-2.00 [-2.00, -2.00]* (6 pairs)",
                                       "-4.00 [-4.00, -4.00]* (6 pairs) |"]
    assert "| zeroshot |" not in diffs


def test_doc_sections_appear_only_with_their_result_files(tmp_path):
    from dvpt.experiments.benchmark_figures import FEWSHOT

    assert "Cross-dataset" not in render_results({}) and "Few-shot" not in render_results({})
    folder = tmp_path / "results"
    folder.mkdir()
    for name, records in (("transfer", _transfer_records()), ("fewshot", _fewshot_records())):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    doc = tmp_path / "results.md"
    doc.write_text(f"text\n\n{BEGIN}\n{END}\n")
    assert main(["report", str(folder), "--update-doc", str(doc)]) == 0
    text = doc.read_text()
    block = render_results({"transfer": read_results(folder / "transfer.jsonl"),
                            "fewshot": read_results(folder / "fewshot.jsonl")})
    assert text == f"text\n\n{block}\n"
    assert text.index("### Cross-dataset transfer") < text.index("### Domain generalisation") < text.index("### Few-shot")
    assert transfer_table(_transfer_records(), "domaingen") in text and fewshot_table(_fewshot_records()) in text
    assert "12 runs, each method tuned on all classes of emoji-animals (seeds 1, 2, 3, 4)" in text
    assert (tmp_path / "figures" / FEWSHOT).read_bytes()[:4] == b"\x89PNG"


# ---- the quick runs ---------------------------------------------------------------------------
def _check_common(r, protocol):
    assert r["protocol"] == protocol and r["domain"] == "color" and r["test_per_class"] == 10
    assert r["hyperparameters"]["optim"]["epochs"] == 2 and r["hyperparameters"]["optim"]["batch_size"] == 64
    assert 0 <= r["train_acc"] <= 100 and r["seconds"] > 0
    assert (r["lr_scale"] is None) == (r["method"] == "zeroshot")


@pytest.mark.slow
def test_quick_transfer_writes_one_line_per_run_with_both_tables_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    # two of the quick plan's three methods keep this test short (every method runs the transfer
    # protocol in tests/test_protocols.py)
    methods = ["--methods", "zeroshot,coop"]
    assert main(["benchmark", "--quick", "--protocol", "crossdataset", *methods, "-o", str(out)]) == 0
    lines = (out / "transfer.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted((r["method"], r["seed"]) for r in records) == sorted(
        (m, s) for m in ("zeroshot", "coop") for s in (1, 2))
    for r in records:
        assert set(r) == TRANSFER_KEYS
        _check_common(r, "transfer")
        assert r["dataset"] == "emoji-activities" and r["shots"] == 16
        assert list(r["crossdataset"]) == ["emoji-food@color"] and list(r["domaingen"]) == ["emoji-activities@line"]
        for value in (r["source"], *r["crossdataset"].values(), *r["domaingen"].values()):
            assert 0 <= value <= 100
        assert r["crossdataset_mean"] == pytest.approx(statistics.fmean(r["crossdataset"].values()))
        assert r["domaingen_mean"] == pytest.approx(statistics.fmean(r["domaingen"].values()))
    by = {(r["method"], r["seed"]): r for r in records}
    # 85 classes: chance is ~1%; the frozen prompt does not depend on the seed's training
    assert by[("zeroshot", 1)]["source"] > 30 and by[("zeroshot", 1)]["crossdataset"] == by[("zeroshot", 2)]["crossdataset"]
    # the line target is scored over the source classifier's rows for its classes, the other group over its own
    run = out / "runs" / "transfer" / "emoji-activities" / "coop" / "seed1" / "eval"
    line, food = (json.loads((run / f"{n}.json").read_text()) for n in ("emoji-activities_line", "emoji-food_color"))
    source_names = json.loads((run / "source.json").read_text())["classes"]
    assert [source_names[i] for i in line["source_rows"]] == line["classes"] and len(line["classes"]) < len(source_names)
    assert "source_rows" not in food and food["accuracy"] == pytest.approx(by[("coop", 1)]["crossdataset"]["emoji-food@color"])
    table = capsys.readouterr().out
    assert "Cross-dataset:" in table and "Domain generalisation:" in table and "| coop | 2 |" in table
    # a second call, as domaingen, finds every line and runs nothing
    assert main(["benchmark", "--quick", "--protocol", "domaingen", *methods, "-o", str(out)]) == 0
    assert (out / "transfer.jsonl").read_text().splitlines() == lines


@pytest.mark.slow
def test_quick_fewshot_writes_one_line_per_run_and_resumes(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--quick", "--protocol", "fewshot", "-o", str(out)]) == 0
    lines = (out / "fewshot.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    expected = [("zeroshot", s, 0) for s in (1, 2)] + [(m, s, k) for m in ("coop", "dvpt") for s in (1, 2) for k in (1, 2)]
    assert sorted((r["method"], r["seed"], r["shots"]) for r in records) == sorted(expected)
    for r in records:
        assert set(r) == FEWSHOT_KEYS
        _check_common(r, "fewshot")
        assert r["dataset"] == "emoji-activities" and 0 <= r["accuracy"] <= 100
    by = {(r["method"], r["seed"], r["shots"]): r for r in records}
    assert by[("zeroshot", 1, 0)]["accuracy"] == by[("zeroshot", 2, 0)]["accuracy"] > 30
    # every run trained on its own shot count: k images of each of the 85 classes
    metrics = json.loads((out / "runs" / "fewshot" / "emoji-activities" / "coop" / "2shot-seed1" / "metrics.json").read_text())
    assert set(metrics["shots_used"].values()) == {2} and metrics["accuracy"] == by[("coop", 1, 2)]["accuracy"]
    # resume: drop two lines, re-run; exactly those two come back and the rest is untouched
    (out / "fewshot.jsonl").write_text("\n".join(lines[:-2]) + "\n")
    assert main(["benchmark", "--quick", "--protocol", "fewshot", "-o", str(out)]) == 0
    again = (out / "fewshot.jsonl").read_text().splitlines()
    assert len(again) == 10 and again[:8] == lines[:8]
    assert sorted(json.loads(x)["seconds"] for x in again[8:]) == sorted(json.loads(x)["seconds"] for x in lines[8:])
