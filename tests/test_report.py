"""``dvpt report`` on hand-written run folders: exact tables, both HM conventions, missing runs.

Spreads are sample standard deviations (ddof=1). Every expected number below was worked out
by hand from the values written into the folders (see the comments).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from dvpt.cli import main
from dvpt.report import base2novel_table, build_report, fewshot_table, render, transfer_table
from dvpt.report.stats import Stat, harmonic_mean

# (method, dataset) -> per seed (base, novel)
B2N = {
    ("coop", "dtd"): {1: (80, 50), 2: (82, 52), 3: (84, 60)},
    ("coop", "eurosat"): {1: (90, 40), 2: (90, 44), 3: (93, 42)},
    ("zeroshot", "dtd"): {1: (70, 75), 2: (72, 77)},  # seed 3 missing
    ("zeroshot", "eurosat"): {1: (60, 70), 2: (62, 70), 3: (64, 70)},
    ("kgcoop", "dtd"): {1: (81, 70), 2: (81, 70), 3: (81, 70)},  # no eurosat at all
}


def write_run(folder: Path, *, method: str, dataset: str, seed: int, protocol: str = "base2novel", shots: int = 16,
              backbone: str = "micro", **metrics) -> Path:
    folder.mkdir(parents=True)
    config = {"method": method, "backbone": backbone, "protocol": protocol, "seed": seed,
              "data": {"dataset": dataset, "root": None, "shots": shots, "options": {}}, "optim": {"epochs": 10}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text(json.dumps({"method": method, "dataset": dataset, **metrics}))
    return folder


@pytest.fixture
def b2n_runs(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for (method, dataset), seeds in B2N.items():
        for seed, (b, n) in seeds.items():
            write_run(root / "base2novel" / dataset / method / f"16shot-seed{seed}", method=method, dataset=dataset,
                      seed=seed, base=b, novel=n, hm=harmonic_mean(b, n))
    # a sweep entry that never produced metrics: listed, not averaged
    index = {"runs": {"base2novel/dtd/maple/16shot-seed1": {"status": "failed", "error": "unknown method 'maple'",
                                                             "output": "base2novel/dtd/maple/16shot-seed1",
                                                             "log": "logs/base2novel/dtd/maple/16shot-seed1.log"},
                      "base2novel/dtd/coop/16shot-seed1": {"status": "done", "output": "base2novel/dtd/coop/16shot-seed1",
                                                           "log": "logs/x.log"}}}
    (root / "sweep.json").write_text(json.dumps(index))
    return root


def md_row(table, **match) -> str:
    """The markdown line of one row."""
    row = table.row(**match)
    return "| " + " | ".join(render._row_texts(table, row, "±")) + " |"


def test_base2novel_table_exact(b2n_runs: Path) -> None:
    report = build_report([b2n_runs])
    (table,) = report.tables
    assert table.title == "Base-to-novel, micro, 16 shots"
    # coop/dtd: base 80,82,84 -> 82 ± 2; novel 50,52,60 -> 54 ± sqrt(28)=5.29;
    # HM(82, 54) = 65.12; per-seed HMs 61.54, 63.64, 70.00 -> std 4.41
    assert md_row(table, dataset="dtd", method="coop") == "| dtd | coop | 82.00 ± 2.00 | 54.00 ± 5.29 | 65.12 ± 4.41 | 3 |"
    assert md_row(table, dataset="eurosat", method="coop") == "| eurosat | coop | 91.00 ± 1.73 | 42.00 ± 2.00 | 57.47 ± 1.89 | 3 |"
    assert md_row(table, dataset="dtd", method="zeroshot") == "| dtd | zeroshot† | 71.00 ± 1.41 | 76.00 ± 1.41 | 73.41 ± 1.42 | 2 |"
    assert md_row(table, dataset="eurosat", method="zeroshot") == "| eurosat | zeroshot | 62.00 ± 2.00 | 70.00 ± 0.00 | 65.76 ± 1.13 | 3 |"
    # averages: coop base (82+91)/2 = 86.5, novel (54+42)/2 = 48, HM(86.5, 48) = 61.74
    assert md_row(table, dataset="Average", method="coop") == "| Average | coop | 86.50 | 48.00 | 61.74 | — |"
    # zeroshot is averaged over both datasets but flagged: dtd has 2 of 3 seeds
    assert md_row(table, dataset="Average", method="zeroshot") == "| Average | zeroshot† | 66.50 | 73.00 | 69.60 | — |"
    # kgcoop has no eurosat: no average over a smaller set of datasets
    assert md_row(table, dataset="Average", method="kgcoop") == "| Average | kgcoop† | — | — | — | — |"
    assert [r["method"] for r in table.rows[:3]] == ["zeroshot", "coop", "kgcoop"]
    assert table.row(dataset="dtd", method="coop")["base"] == Stat(82.0, 2.0, 3)
    assert table.row(dataset="dtd", method="coop")["novel"].std == pytest.approx(statistics.stdev([50, 52, 60]))
    assert "ddof=1" in table.caption and "harmonic mean of the averaged base and novel" in table.caption


def test_hm_of_means_differs_from_mean_of_hms(b2n_runs: Path) -> None:
    means = build_report([b2n_runs], hm_of="means").tables[0].row(dataset="Average", method="coop")["hm"].mean
    per_dataset = build_report([b2n_runs], hm_of="per-dataset").tables[0]
    assert means == pytest.approx(harmonic_mean(86.5, 48.0)) == pytest.approx(61.7398, abs=1e-4)
    # mean of the per-dataset HMs: (HM(82, 54) + HM(91, 42)) / 2 = (65.1176 + 57.4737) / 2
    expected = (harmonic_mean(82, 54) + harmonic_mean(91, 42)) / 2
    assert per_dataset.row(dataset="Average", method="coop")["hm"].mean == pytest.approx(expected)
    assert expected == pytest.approx(61.2957, abs=1e-4)
    assert "mean of the per-dataset HMs" in per_dataset.caption
    # per-dataset cells do not depend on the convention
    assert per_dataset.row(dataset="dtd", method="coop")["hm"].mean == pytest.approx(harmonic_mean(82, 54))


def test_missing_runs_are_listed(b2n_runs: Path) -> None:
    report = build_report([b2n_runs])
    missing = {(m["method"], m["dataset"]): m["missing_seeds"] for m in report.missing}
    assert missing == {("zeroshot", "dtd"): [3], ("kgcoop", "eurosat"): [1, 2, 3]}
    assert [u["run"] for u in report.collection.unfinished] == ["base2novel/dtd/maple/16shot-seed1"]
    text = report.markdown()
    assert "zeroshot on dtd: seeds 3" in text and "kgcoop on eurosat: seeds 1, 2, 3" in text
    assert "unknown method 'maple'" in text
    assert "kgcoop: no average: no runs for eurosat" in text


def test_python_api_takes_plain_records() -> None:
    records = [{"dataset": d, "method": m, "seed": s, "base": b, "novel": n, "hm": harmonic_mean(b, n)}
               for (m, d), seeds in B2N.items() for s, (b, n) in seeds.items()]
    table = base2novel_table(records)
    text = render.markdown(table)
    assert "| Average | coop | 86.50 | 48.00 | 61.74 | — |" in text
    assert text.splitlines()[4] == "| Dataset | Method | Base | Novel | HM | Seeds |"


def test_cli_writes_all_formats_and_figures(b2n_runs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["report", str(b2n_runs), "-o", str(out), "--format", "md,csv,tex"]) == 0
    assert "| Average | coop | 86.50 | 48.00 | 61.74 | — |" in capsys.readouterr().out
    rows = (out / "base2novel-micro-16shot.csv").read_text().splitlines()
    assert rows[0].startswith("dataset,method,base_mean,base_std,base_n,novel_mean")
    coop_dtd = next(r for r in rows if r.startswith("dtd,coop,")).split(",")
    assert [float(x) for x in coop_dtd[2:5]] == [82.0, 2.0, 3]
    tex = (out / "tables.tex").read_text()
    assert r"82.00 $\pm$ 2.00" in tex and r"\toprule" in tex and "zeroshot$^\\dagger$" in tex
    assert "zeroshot" in (out / "missing.csv").read_text()
    for name in ("base2novel-micro-16shot-hm.png", "base2novel-micro-16shot-base-novel.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"


def test_cli_rejects_bad_format(b2n_runs: Path, capsys) -> None:
    assert main(["report", str(b2n_runs), "--format", "md,xlsx"]) == 2
    assert "--format 'md,xlsx'" in capsys.readouterr().err


def test_fewshot_table_and_curves(tmp_path: Path) -> None:
    acc = {(1, 1): 40, (1, 2): 42, (2, 1): 50, (2, 2): 54}  # (shots, seed) -> accuracy
    for (shots, seed), a in acc.items():
        write_run(tmp_path / f"all-{shots}-{seed}", method="coop", dataset="dtd", seed=seed, protocol="all",
                  shots=shots, accuracy=a)
    report = build_report([tmp_path])
    (table,) = report.tables
    assert md_row(table, dataset="dtd", method="coop") == "| dtd | coop | 41.00 ± 1.41 | 52.00 ± 2.83 |"
    assert md_row(table, dataset="Average", method="coop") == "| Average | coop | 41.00 | 52.00 |"
    assert fewshot_table([]).rows == []
    from dvpt.report.build import write_report

    write_report(report, tmp_path / "out", ["md"])
    assert (tmp_path / "out" / "figures" / "fewshot-micro-curves.png").is_file()


def test_transfer_table_averages_targets_only(tmp_path: Path) -> None:
    for seed, (src, dtd, euro) in {1: (70, 40, 30), 2: (72, 44, 34)}.items():
        evals = [{"dataset": "imagenet", "subset": "all", "accuracy": src},
                 {"dataset": "dtd", "subset": "all", "accuracy": dtd},
                 {"dataset": "eurosat", "subset": "all", "accuracy": euro}]
        write_run(tmp_path / f"x{seed}", method="coop", dataset="imagenet", seed=seed, protocol="crossdataset",
                  accuracy=src, evaluations=evals)
    (table,) = build_report([tmp_path]).tables
    assert table.columns == ["method", "imagenet", "dtd", "eurosat", "Average", "seeds"]
    # per seed: (40+30)/2 = 35, (44+34)/2 = 39 -> 37 ± 2.83
    assert md_row(table, method="coop") == "| coop | 71.00 ± 1.41 | 42.00 ± 2.83 | 32.00 ± 2.83 | 37.00 ± 2.83 | 2 |"
    assert transfer_table([]).rows == []
