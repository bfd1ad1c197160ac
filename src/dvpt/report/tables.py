"""Records -> paper-style tables (one ``Table`` per protocol, backbone and shots).

Cells hold ``Stat`` (mean, sample std over seeds, n). A method x dataset cell with fewer
seeds than the table's others is flagged and listed in ``Table.missing``; an average over
datasets is given only for methods that have every dataset of the table, never over a
smaller set.

HM over datasets: the literature's averaged HM is the harmonic mean of the averaged base
and novel accuracies (``hm_of="means"``, the default); ``hm_of="per-dataset"`` averages
the HMs instead. Either way the caption says which.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .stats import Stat, harmonic_mean

HM_OF = ("means", "per-dataset")
FLAG = "†"
METHOD_ORDER = ["zeroshot", "coop", "cocoop", "kgcoop", "prograd", "maple", "promptsrc", "dvpt"]
DATASET_ORDER = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                 "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
STD_NOTE = "mean ± sample std (ddof=1) over seeds"

Record = dict[str, Any]


@dataclass
class Table:
    """Rows are dicts keyed by ``columns``; values are str, int, ``Stat`` or None."""

    key: str
    title: str
    caption: str
    columns: list[str]
    rows: list[dict[str, Any]]
    #: cells with fewer seeds than expected: dataset, method, shots, missing_seeds
    missing: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, **match: Any) -> dict[str, Any]:
        """The one row whose columns equal ``match`` (for callers and tests)."""
        found = [r for r in self.rows if all(r.get(k) == v for k, v in match.items())]
        if len(found) != 1:
            raise KeyError(f"{len(found)} rows match {match} in {self.title!r}")
        return found[0]


def _ordered(values: Iterable[str], canonical: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(values))
    rank = {name: i for i, name in enumerate(canonical)}
    return sorted(seen, key=lambda v: (rank.get(v.split(" (")[0], len(rank)), seen.index(v)))


def _group(records: Iterable[Record], key: Callable[[Record], Any]) -> dict[Any, list[Record]]:
    out: dict[Any, list[Record]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return out


def _seed_hm(record: Record) -> float:
    return float(record["hm"]) if record.get("hm") is not None else harmonic_mean(record["base"], record["novel"])


def _missing_seeds(cell: list[Record], expected: set) -> list:
    return sorted(expected - {r["seed"] for r in cell})


# ---- base-to-novel -----------------------------------------------------------------------
def _b2n_cell(cell: list[Record]) -> dict[str, Stat]:
    """Per dataset, as the papers' per-dataset tables: HM of the seed-mean base and novel."""
    base, novel = Stat.of(r["base"] for r in cell), Stat.of(r["novel"] for r in cell)
    hms = Stat.of(_seed_hm(r) for r in cell)
    return {"base": base, "novel": novel, "hm": Stat(harmonic_mean(base.mean, novel.mean), hms.std, hms.n)}


def _b2n_average(cells: list[dict[str, Stat]], hm_of: str) -> dict[str, Stat]:
    n = len(cells)
    base = sum(c["base"].mean for c in cells) / n
    novel = sum(c["novel"].mean for c in cells) / n
    hm = harmonic_mean(base, novel) if hm_of == "means" else sum(c["hm"].mean for c in cells) / n
    return {"base": Stat.single(base, n), "novel": Stat.single(novel, n), "hm": Stat.single(hm, n)}


def _b2n_caption(hm_of: str, n_datasets: int) -> str:
    how = ("the harmonic mean of the averaged base and novel accuracies, as in the literature"
           if hm_of == "means" else "the mean of the per-dataset HMs (not the literature's convention)")
    datasets = f"{n_datasets} dataset{'s' if n_datasets != 1 else ''}"
    return (f"Base-to-novel accuracy (%), {STD_NOTE}; HM = 2BN/(B+N). Per dataset: HM of the seed-mean base and "
            f"novel, ± over the per-seed HMs. Average over {datasets}: base and novel are means of the per-dataset "
            f"means; HM is {how}.")


def base2novel_table(records: Iterable[Record], hm_of: str = "means", title: str = "Base-to-novel",
                     key: str = "base2novel") -> Table:
    """Records with ``dataset, method, seed, base, novel`` (``hm`` optional) -> one ``Table``.

    Rows: an ``Average`` block (one row per method) then one block per dataset.
    """
    if hm_of not in HM_OF:
        raise ValueError(f"hm_of must be one of {HM_OF}, got {hm_of!r}")
    records = [r for r in records if r.get("base") is not None and r.get("novel") is not None]
    datasets = _ordered((r["dataset"] for r in records), DATASET_ORDER)
    methods = _ordered((r["method"] for r in records), METHOD_ORDER)
    cells = _group(records, lambda r: (r["dataset"], r["method"]))
    expected = {r["seed"] for r in records}
    table = Table(key, title, _b2n_caption(hm_of, len(datasets)), ["dataset", "method", "base", "novel", "hm", "seeds"], [])
    per_dataset: dict[str, list[dict[str, Any]]] = {}
    for d in datasets:
        for m in methods:
            cell = cells.get((d, m))
            lacking = _missing_seeds(cell or [], expected)
            if lacking:
                table.missing.append({"dataset": d, "method": m, "missing_seeds": lacking})
            if cell:
                stats = _b2n_cell(cell)
                row = {"dataset": d, "method": m, **stats, "seeds": len(cell), "flag": FLAG if lacking else ""}
                per_dataset.setdefault(m, []).append(row)
                table.rows.append(row)
    averages = []
    for m in methods:
        rows = per_dataset.get(m, [])
        absent = [d for d in datasets if d not in {r["dataset"] for r in rows}]
        if absent:
            averages.append({"dataset": "Average", "method": m, "base": None, "novel": None, "hm": None,
                             "seeds": None, "flag": FLAG})
            table.notes.append(f"{m}: no average: no runs for {', '.join(absent)}")
            continue
        flag = FLAG if any(r["flag"] for r in rows) else ""
        averages.append({"dataset": "Average", "method": m, **_b2n_average(rows, hm_of), "seeds": None, "flag": flag})
    table.rows[:0] = averages
    if table.missing:
        table.notes.append(f"{FLAG}: fewer seeds than the table's others ({', '.join(map(str, sorted(expected)))}); "
                           "see the list of missing runs")
    return table


# ---- few-shot / all classes --------------------------------------------------------------
def fewshot_table(records: Iterable[Record], title: str = "Few-shot", key: str = "fewshot") -> Table:
    """Records with ``dataset, method, seed, shots, accuracy`` -> accuracy per shots (columns)."""
    records = [r for r in records if r.get("accuracy") is not None]
    datasets = _ordered((r["dataset"] for r in records), DATASET_ORDER)
    methods = _ordered((r["method"] for r in records), METHOD_ORDER)
    shots = sorted({r["shots"] for r in records})
    cols = [f"{k} shots" for k in shots]
    cells = _group(records, lambda r: (r["dataset"], r["method"], r["shots"]))
    expected = {r["seed"] for r in records}
    caption = (f"Accuracy (%) on all classes, {STD_NOTE}. Average: mean over the {len(datasets)} datasets of the "
               "per-dataset means, given only where a method has every dataset.")
    table = Table(key, title, caption, ["dataset", "method", *cols], [])
    means: dict[tuple[str, int], list[float]] = defaultdict(list)
    for d in datasets:
        for m in methods:
            row: dict[str, Any] = {"dataset": d, "method": m, "flag": ""}
            for k, col in zip(shots, cols):
                cell = cells.get((d, m, k), [])
                lacking = _missing_seeds(cell, expected)
                if lacking:
                    table.missing.append({"dataset": d, "method": m, "shots": k, "missing_seeds": lacking})
                    row["flag"] = FLAG
                row[col] = Stat.of(r["accuracy"] for r in cell) if cell else None
                if cell:
                    means[(m, k)].append(row[col].mean)
            if any(row[c] is not None for c in cols):
                table.rows.append(row)
    averages = []
    for m in methods:
        row = {"dataset": "Average", "method": m, "flag": ""}
        for k, col in zip(shots, cols):
            vals = means.get((m, k), [])
            row[col] = Stat.single(sum(vals) / len(vals), len(vals)) if len(vals) == len(datasets) else None
        averages.append(row)
    table.rows[:0] = averages
    return table


# ---- cross-dataset / domain generalisation -----------------------------------------------
def _eval_label(e: dict[str, Any]) -> str:
    subset = e.get("subset")
    return e["dataset"] if subset in (None, "", "all", "test") else f"{e['dataset']} ({subset})"


def transfer_table(records: Iterable[Record], title: str = "Transfer", key: str = "transfer") -> Table:
    """Records with ``evaluations`` (one source dataset) -> accuracy per evaluated dataset.

    ``Average`` is over the targets only (every evaluated dataset but the source), as papers
    report the source accuracy separately.
    """
    records = [r for r in records if r.get("evaluations")]
    methods = _ordered((r["method"] for r in records), METHOD_ORDER)
    sources = {r["dataset"].split(" (")[0] for r in records}
    labels = list(dict.fromkeys(_eval_label(e) for r in records for e in r["evaluations"]))
    targets = [lb for lb in labels if lb.split(" (")[0] not in sources]
    expected = {r["seed"] for r in records}
    caption = (f"Accuracy (%) per evaluated dataset, {STD_NOTE}; source: {', '.join(sorted(sources))}. "
               f"Average: over the {len(targets)} target datasets, per seed, then over seeds.")
    table = Table(key, title, caption, ["method", *labels, "Average", "seeds"], [])
    by_method = _group(records, lambda r: r["method"])
    for m in methods:
        cell = by_method[m]
        lacking = _missing_seeds(cell, expected)
        if lacking:
            table.missing.append({"dataset": ", ".join(sorted(sources)), "method": m, "missing_seeds": lacking})
        accs = [{_eval_label(e): e["accuracy"] for e in r["evaluations"]} for r in cell]
        row: dict[str, Any] = {"method": m, "seeds": len(cell), "flag": FLAG if lacking else ""}
        for lb in labels:
            vals = [a[lb] for a in accs if lb in a]
            row[lb] = Stat.of(vals) if vals else None
        complete = [a for a in accs if all(t in a for t in targets)]
        row["Average"] = Stat.of(sum(a[t] for t in targets) / len(targets) for a in complete) if targets and complete else None
        table.rows.append(row)
    return table


# ---- all tables of a collection ----------------------------------------------------------
PROTOCOL_KIND = {"base2novel": "base2novel", "all": "fewshot", "fewshot": "fewshot",
                 "crossdataset": "transfer", "domaingen": "transfer", "transfer": "transfer"}


def build_tables(records: Sequence[Record], hm_of: str = "means") -> list[Table]:
    """One table per (protocol kind, backbone[, shots | source]) found in ``records``."""
    tables = []
    for (kind, backbone), group in _group(records, lambda r: (_kind(r), r["backbone"])).items():
        slug = _slug(backbone)
        if kind == "base2novel":
            for shots, sub in sorted(_group(group, lambda r: r["shots"]).items()):
                tables.append(base2novel_table(sub, hm_of, f"Base-to-novel, {backbone}, {shots} shots",
                                               f"base2novel-{slug}-{shots}shot"))
        elif kind == "fewshot":
            tables.append(fewshot_table(group, f"Few-shot (all classes), {backbone}", f"fewshot-{slug}"))
        elif kind == "transfer":
            for (protocol, source), sub in _group(group, lambda r: (r["protocol"], r["dataset"])).items():
                tables.append(transfer_table(sub, f"{_TRANSFER.get(protocol, protocol)}, {backbone}, source {source}",
                                             f"{protocol}-{slug}-{_slug(source)}"))
    return tables


def _kind(record: Record) -> str:
    """The table a record belongs in: by protocol, else (a new protocol) by its numbers."""
    if record["protocol"] in PROTOCOL_KIND:
        return PROTOCOL_KIND[record["protocol"]]
    if record.get("base") is not None and record.get("novel") is not None:
        return "base2novel"
    return "fewshot" if record.get("accuracy") is not None else "transfer"


_TRANSFER = {"crossdataset": "Cross-dataset transfer", "domaingen": "Domain generalisation",
             "transfer": "Cross-dataset transfer and domain generalisation"}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-")
