"""Tables and figures of ``dvpt benchmark`` from its JSON lines alone.

Nothing here runs a model: every number comes from ``docs/results/*.jsonl`` (or any folder
of result files), so ``dvpt report docs/results --update-doc docs/results.md`` rebuilds the
docs' tables exactly and a test can check the committed ones against it.

Intervals are 95% percentile bootstraps (2000 resamples, fixed seed) over runs: a run is one
(dataset, seed) pair, so the interval covers both the seed and the dataset spread. Paired
differences are taken run by run on the same dataset, seed and few-shot sample.
"""
from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config.loader import method_preset
from ..errors import DataError
from ..files import parse_json, write_text

REFERENCE = "dvpt"
ZEROSHOT = "zeroshot"
BEGIN = "<!-- benchmark tables: rebuilt by `dvpt report docs/results --update-doc docs/results.md` -->"
END = "<!-- end of benchmark tables -->"
README_BEGIN = "<!-- benchmark summary: rebuilt by `dvpt report docs/results --update-readme README.md` -->"
README_END = "<!-- end of benchmark summary -->"


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every line of a results file; a broken line names the file, the line and the fix."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        record = parse_json(line, f"{path}:{number}", "results line", error=DataError,
                            fix="delete that line and re-run to redo the run")
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number} is not a JSON object; delete that line and re-run to redo the run")
        records.append(record)
    return records


def read_result_dir(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every ``*.jsonl`` of ``folder`` by file stem (``base2novel``, ``budget-curve``, ...)."""
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise DataError(f"no *.jsonl results in {folder}; run `dvpt benchmark -o {folder}` first")
    return {f.stem: read_results(f) for f in files}


# ---- intervals -----------------------------------------------------------------------------
def bootstrap_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval of ``values`` (resampling the runs).

    One value has no interval (returned as the mean twice).
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return mean, mean, mean
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    return mean, means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))]


def paired_differences(records: Iterable[dict[str, Any]], method: str, metric: str,
                       reference: str = REFERENCE, keys: Sequence[str] = ("dataset", "seed")) -> list[float]:
    """``method - reference`` on each run both made: the same dataset, seed (and ``keys``), so the same sample.

    Few-shot pairs on ``("dataset", "seed", "shots")``: a shot count is its own sample.
    """
    by = {(*(r[k] for k in keys), r["method"]): r[metric] for r in records}
    return [by[(*key, method)] - by[(*key, reference)] for (*key, m) in sorted(by) if m == method
            and (*key, reference) in by]


def _cell(values: Sequence[float]) -> str:
    mean, lo, hi = bootstrap_ci(values)
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def diff_cell(diffs: Sequence[float]) -> str:
    """A paired difference with its interval; ``*`` when the interval excludes zero (two pairs or more)."""
    if not diffs:
        return "—"
    if len(diffs) == 1:  # one pair has no interval: nothing to mark
        return f"{diffs[0]:+.2f} (1 pair)"
    mean, lo, hi = bootstrap_ci(diffs)
    mark = "*" if lo > 0 or hi < 0 else ""
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]{mark} ({len(diffs)} pairs)"


def _methods(records: Iterable[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in records))


# ---- tables ----------------------------------------------------------------------------------
def summary_table(records: list[dict[str, Any]], reference: str = REFERENCE) -> str:
    """Per method: mean base/novel/HM with 95% intervals, train accuracy, and HM - dvpt paired.

    A paired difference whose interval excludes zero is marked with ``*`` (never for one pair).
    """
    lines = ["| Method | Runs | Base | Novel | HM | Train acc | HM − " + reference + " |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for method in _methods(records):
        rows = [r for r in records if r["method"] == method]
        train = [r["train_acc"] for r in rows if r.get("train_acc") is not None]
        diff = diff_cell(paired_differences(records, method, "hm", reference)) if method != reference else "—"
        train_cell = f"{statistics.fmean(train):.1f}" if train else "—"
        lines.append(f"| {method} | {len(rows)} | {_cell([r['base'] for r in rows])} | "
                     f"{_cell([r['novel'] for r in rows])} | {_cell([r['hm'] for r in rows])} | "
                     f"{train_cell} | {diff} |")
    return "\n".join(lines)


def signature_table(records: list[dict[str, Any]]) -> str:
    """The literature's signature, paired run by run: base and novel against zero-shot, novel against CoOp.

    CoOp should gain base and lose novel accuracy against zero-shot; the knowledge-guided
    methods should lose less novel accuracy than CoOp (a positive novel − CoOp).
    """
    lines = ["| Method | Base − zero-shot | Novel − zero-shot | Novel − CoOp |", "|---|---:|---:|---:|"]
    for method in _methods(records):
        if method == ZEROSHOT:
            continue
        base = diff_cell(paired_differences(records, method, "base", ZEROSHOT))
        novel = diff_cell(paired_differences(records, method, "novel", ZEROSHOT))
        versus = diff_cell(paired_differences(records, method, "novel", "coop")) if method != "coop" else "—"
        lines.append(f"| {method} | {base} | {novel} | {versus} |")
    return "\n".join(lines)


def per_dataset_table(records: list[dict[str, Any]]) -> str:
    """HM per dataset and method: mean over seeds with the 95% bootstrap interval over seeds."""
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    methods = _methods(records)
    lines = ["| Dataset | Seeds | " + " | ".join(methods) + " |", "|---|---:|" + "---:|" * len(methods)]
    for dataset in datasets:
        cells = []
        for method in methods:
            values = [r["hm"] for r in records if r["dataset"] == dataset and r["method"] == method]
            cells.append(_cell(values) if values else "not run")
        seeds = sorted({r["seed"] for r in records if r["dataset"] == dataset})
        lines.append(f"| {dataset} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _published(method: str) -> str:
    optim = method_preset(method).get("optim", {})
    if not optim.get("epochs"):
        return "—"
    return f"{optim['lr']:g}, {optim['batch_size']}, {optim['epochs']}"


def _scale(r: dict[str, Any]) -> str:
    return "—" if r.get("lr_scale") is None else f"{r['lr_scale']:g}"


def hyperparameter_table(records: list[dict[str, Any]]) -> str:
    """Each method's values as the runs resolved them, beside its published recipe."""
    lines = ["| Method | Published lr, batch, epochs | lr scale | lr | Batch | Epochs | Warm-up | Precision |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for method in _methods(records):
        rows = [r for r in records if r["method"] == method]
        optims = [r["hyperparameters"]["optim"] for r in rows]
        trains = _published(method) != "—"  # zero-shot carries the shared optimizer keys but trains nothing

        def values(items: Iterable[str]) -> str:
            return ", ".join(dict.fromkeys(items))

        cells = [_published(method), values(_scale(r) for r in rows),
                 values(f"{o['lr']:.4g}" for o in optims) if trains else "—",
                 values(str(o["batch_size"]) for o in optims) if trains else "—",
                 values(str(o["epochs"]) for o in optims) if trains else "0",
                 values(str(o["warmup_epochs"]) for o in optims) if trains else "—",
                 values(str(r["hyperparameters"].get("precision", "auto")) for r in rows)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def coverage_table(records: list[dict[str, Any]]) -> str:
    """Which runs the tables stand on: per dataset, the seeds and how many runs of each method."""
    methods = _methods(records)
    lines = ["| Dataset | Seeds | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == dataset]
        counts = [str(sum(r["method"] == m for r in rows)) for m in methods]
        seeds = ",".join(map(str, sorted({r["seed"] for r in rows})))
        lines.append(f"| {dataset} | {seeds} | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def time_table(records: list[dict[str, Any]]) -> str:
    """Measured training + evaluation seconds per method (the runs' own clocks)."""
    lines = ["| Method | Runs | Mean s per run | Total min |", "|---|---:|---:|---:|"]
    for method in _methods(records):
        seconds = [float(r["seconds"]) for r in records if r["method"] == method and r.get("seconds") is not None]
        if seconds:
            lines.append(f"| {method} | {len(seconds)} | {statistics.fmean(seconds):.0f} | {sum(seconds) / 60:.1f} |")
    total = sum(float(r["seconds"]) for r in records if r.get("seconds") is not None)
    lines.append(f"| all | {len(records)} | | {total / 60:.1f} |")
    return "\n".join(lines)


def curve_table(records: list[dict[str, Any]]) -> str:
    """Base, novel, HM and training accuracy against epochs (the budget curve)."""
    lines = ["| Dataset | Method | Seed | Epochs | lr | Base | Novel | HM | Train acc |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(records, key=lambda r: (r["dataset"], r["method"], r["seed"], r["epochs"])):
        train = "—" if r.get("train_acc") is None else f"{r['train_acc']:.1f}"
        lr = r["hyperparameters"]["optim"]["lr"] if _published(r["method"]) != "—" else None  # zero-shot trains nothing
        lines.append(f"| {r['dataset']} | {r['method']} | {r['seed']} | {r['epochs']} | "
                     f"{'—' if lr is None else f'{lr:.4g}'} | {r['base']:.2f} | "
                     f"{r['novel']:.2f} | {r['hm']:.2f} | {train} |")
    return "\n".join(lines)


def transfer_table(records: list[dict[str, Any]], part: str, reference: str = REFERENCE) -> str:
    """One table of the transfer runs: ``part`` is ``crossdataset`` or ``domaingen``.

    Per method: accuracy on the source's own test images, the mean of each target over the
    runs, the mean over the targets with its 95% interval over the runs (seeds), and the
    paired difference of that mean to ``reference`` on the same seed (`*`: interval excludes 0).
    """
    records = [r for r in records if r[part]]  # runs without targets of this part have nothing to show
    targets = list(dict.fromkeys(t for r in records for t in r[part]))
    lines = ["| Method | Runs | Source | " + " | ".join(f"`{t}`" for t in targets) + " | Mean | Train acc | Mean − "
             + reference + " |", "|---|---:|---:|" + "---:|" * len(targets) + "---:|---:|---:|"]
    for method in _methods(records):
        rows = [r for r in records if r["method"] == method]
        cells = []
        for target in targets:
            values = [r[part][target] for r in rows if target in r[part]]
            cells.append(f"{statistics.fmean(values):.2f}" if values else "not run")
        train = [r["train_acc"] for r in rows if r.get("train_acc") is not None]
        diff = diff_cell(paired_differences(records, method, f"{part}_mean", reference)) if method != reference else "—"
        lines.append(f"| {method} | {len(rows)} | {_cell([r['source'] for r in rows])} | " + " | ".join(cells)
                     + f" | {_cell([r[part + '_mean'] for r in rows])} | "
                     + (f"{statistics.fmean(train):.1f}" if train else "—") + f" | {diff} |")
    return "\n".join(lines)


def fewshot_table(records: list[dict[str, Any]]) -> str:
    """Accuracy per method and shot count: mean [95% interval] over the (dataset, seed) runs.

    Zero-shot trains on nothing, so it has one column of its own (shots 0).
    """
    shots = sorted({int(r["shots"]) for r in records})
    lines = ["| Method | " + " | ".join("zero-shot" if k == 0 else f"{k} shot{'s' * (k > 1)}" for k in shots) + " |",
             "|---|" + "---:|" * len(shots)]
    for method in _methods(records):
        cells = []
        for k in shots:
            values = [r["accuracy"] for r in records if r["method"] == method and int(r["shots"]) == k]
            cells.append(_cell(values) if values else "—")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fewshot_difference_table(records: list[dict[str, Any]], reference: str = REFERENCE) -> str:
    """Accuracy − ``reference`` per shot count, paired on the same dataset, seed and shots."""
    shots = sorted({int(r["shots"]) for r in records if int(r["shots"]) > 0})
    lines = ["| Method | " + " | ".join(f"{k} shot{'s' * (k > 1)}" for k in shots) + " |", "|---|" + "---:|" * len(shots)]
    for method in _methods(records):
        if method == reference or all(int(r["shots"]) == 0 for r in records if r["method"] == method):
            continue
        cells = [diff_cell(paired_differences([r for r in records if int(r["shots"]) == k], method, "accuracy",
                                              reference, keys=("dataset", "seed", "shots"))) for k in shots]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol_tables(records: list[dict[str, Any]]) -> str:
    """The summary tables of whichever protocols ``records`` hold (what ``dvpt benchmark`` prints)."""
    parts = []
    kinds = {r.get("protocol", "base2novel") for r in records}
    if "base2novel" in kinds:
        parts.append(summary_table([r for r in records if r.get("protocol", "base2novel") == "base2novel"]))
    transfer = [r for r in records if r.get("protocol") == "transfer"]
    if transfer:
        parts += ["Cross-dataset:\n\n" + transfer_table(transfer, "crossdataset"),
                  "Domain generalisation:\n\n" + transfer_table(transfer, "domaingen")]
    fewshot = [r for r in records if r.get("protocol") == "fewshot"]
    if fewshot:
        parts.append("Few-shot:\n\n" + fewshot_table(fewshot))
    return "\n\n".join(parts)


def _seeds(records: Iterable[dict[str, Any]]) -> str:
    return ", ".join(map(str, sorted({r["seed"] for r in records})))


ABLATION_REFERENCE = "full (defaults)"


def selected_row(records: list[dict[str, Any]]) -> str:
    """The selection rule of a tuning study: the row with the highest mean HM (first on a tie)."""
    rows = list(dict.fromkeys(r["row"] for r in records))
    return max(rows, key=lambda row: statistics.fmean(r["hm"] for r in records if r["row"] == row))


def row_table(records: list[dict[str, Any]], reference: str) -> str:
    """``summary_table`` over the rows of a study (records carrying ``row``) instead of methods."""
    return summary_table([{**r, "method": r["row"]} for r in records], reference).replace("| Method |", "| Row |", 1)


# ---- the docs block -------------------------------------------------------------------------
def render_results(results: dict[str, list[dict[str, Any]]]) -> str:
    """The markdown between the markers of docs/results.md, from the result files alone."""
    parts = [BEGIN, ""]
    if results.get("base2novel"):
        records = results["base2novel"]
        parts += ["### Runs behind the tables", "", coverage_table(records), "",
                  "### Base-to-novel: all runs pooled", "",
                  f"{len(records)} runs. Mean [95% bootstrap interval over the (dataset, seed) runs]; the last "
                  "column is the paired HM difference to dvpt on the same dataset, seed and few-shot sample "
                  "(`*`: its interval excludes zero).", "", summary_table(records), "",
                  "![base and novel accuracy per method, 95% intervals](figures/benchmark-base-novel.png)", "",
                  "### The literature's signature, paired run by run", "",
                  "Differences on the same dataset, seed and few-shot sample, with 95% bootstrap intervals over "
                  "the runs (`*`: the interval excludes zero).", "", signature_table(records), "",
                  "### Base-to-novel: HM per dataset (interval over seeds)", "", per_dataset_table(records), "",
                  "### Hyperparameters as the runs resolved them", "", hyperparameter_table(records), "",
                  "### Measured time", "", time_table(records), ""]
    if results.get("budget-curve"):
        parts += ["### Budget curve (tuning data)", "", curve_table(results["budget-curve"]), "",
                  "![HM, base and novel against epochs](figures/benchmark-budget-curve.png)", ""]
    if results.get("tuning"):
        parts += ["### lr grid (tuning data)", "", tuning_table(results["tuning"]), ""]
    if results.get("visual-aug-select"):
        records = results["visual-aug-select"]
        best = selected_row(records)
        parts += ["### dvpt's visual augmentation: selection on the tuning data", "",
                  f"{len(records)} runs on {', '.join(sorted({r['dataset'] for r in records}))} (never reported). "
                  f"Rule: the highest mean HM becomes the default: `{best}`. Last column: paired HM difference "
                  "to it.", "", row_table(records, best), ""]
    if results.get("ablation"):
        records = results["ablation"]
        parts += ["### dvpt ablation (reported data)", "",
                  f"{len(records)} runs on {', '.join(sorted({r['dataset'] for r in records}))}, seeds "
                  f"{', '.join(map(str, sorted({r['seed'] for r in records})))}. Last column: paired HM difference "
                  "to the full default on the same dataset, seed and few-shot sample.", "",
                  row_table(records, ABLATION_REFERENCE), ""]
    if results.get("transfer"):
        records = results["transfer"]
        sources = ", ".join(dict.fromkeys(r["dataset"] for r in records))
        parts += ["### Cross-dataset transfer", "",
                  f"{len(records)} runs, each method tuned on all classes of {sources} (seeds {_seeds(records)}), "
                  "then evaluated with the same prompt on the other groups' own classes. Target columns: mean over "
                  "the runs; Mean: the mean over the targets with its 95% bootstrap interval over the runs; last "
                  "column: the paired difference of that mean to dvpt on the same seed (`*`: its interval excludes "
                  "zero).", "", transfer_table(records, "crossdataset"), "",
                  "### Domain generalisation", "",
                  f"The same {len(records)} runs, evaluated on {sources}'s own classes under a shift (scored over "
                  "the source classifier's matching rows); columns as above.", "",
                  transfer_table(records, "domaingen"), ""]
    if results.get("fewshot"):
        records = results["fewshot"]
        parts += ["### Few-shot (all classes)", "",
                  f"{len(records)} runs on {', '.join(dict.fromkeys(r['dataset'] for r in records))}, seeds "
                  f"{_seeds(records)}. Accuracy: mean [95% bootstrap interval over the (dataset, seed) runs]; "
                  "zero-shot trains on nothing and has its own column.", "", fewshot_table(records), "",
                  "Accuracy − dvpt, paired on the same dataset, seed and few-shot sample (`*`: the interval "
                  "excludes zero):", "", fewshot_difference_table(records), "",
                  "![accuracy against shots per method](figures/benchmark-fewshot.png)", ""]
    parts.append(END)
    return "\n".join(parts)


def tuning_table(records: list[dict[str, Any]]) -> str:
    """Tuning HM per method and lr scale (the grid every method runs on the tuning data)."""
    scales = sorted({float(r["lr_scale"]) for r in records})
    lines = ["| Method | " + " | ".join(f"x{s:g}" for s in scales) + " |", "|---|" + "---:|" * len(scales)]
    for method in _methods(records):
        cells = []
        for scale in scales:
            values = [r["hm"] for r in records if r["method"] == method and float(r["lr_scale"]) == scale]
            cells.append(f"{statistics.fmean(values):.2f}" if values else "not run")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_readme(results: dict[str, list[dict[str, Any]]]) -> str:
    """README's short table: pooled base, novel and HM with intervals, and HM − dvpt."""
    records = results.get("base2novel") or []
    if not records:
        raise DataError("no base2novel.jsonl among the results; the README table is built from it")
    covered = ", ".join(
        f"{dataset} (seeds {','.join(map(str, sorted({r['seed'] for r in records if r['dataset'] == dataset})))})"
        for dataset in dict.fromkeys(r["dataset"] for r in records))
    return "\n".join([README_BEGIN, "",
                      f"`micro`, base-to-novel on {covered}, {len(records)} runs; mean [95% bootstrap interval].",
                      "", summary_table(records), "", README_END])


def update_doc(doc: Path, block: str, begin: str = BEGIN, end: str = END) -> bool:
    """Replace the marked block of ``doc`` (appended when absent); True when the file changed."""
    text = doc.read_text() if doc.is_file() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        new = head + block + tail
    else:
        new = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    if new == text:
        return False
    write_text(doc, new)
    return True
