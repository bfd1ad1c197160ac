"""The dvpt ablation: which design choice buys what, base-to-novel, over datasets and seeds.

Every cell is an ordinary ``run_training`` run folder (``<out>/<row>/<dataset>/seed<k>``), so
the report tool can rebuild any number from the folders; finished folders are not re-run,
so an interrupted ablation resumes. Runs share one in-memory frozen-feature store: the
images of a (dataset, seed) go through the image tower once for all rows.

Two specs: ``ablation`` (the table of docs/results.md) and ``tune`` (the grid that chose
dvpt's own hyper-parameters, run on a held-out dataset, never on the reported ones).
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config.loader import PRESET_DIR, build_config
from ..engine.cache import FeatureStore
from ..engine.io import write_json, write_text
from ..engine.runner import run_training
from ..engine.session import Session
from ..errors import ConfigError
from ..report.stats import harmonic_mean

log = logging.getLogger(__name__)

PLAIN = {"mi": "none", "visual_aug": "none", "infer": "soft"}


@dataclass(frozen=True)
class Row:
    """One line of the table: a method and the options that differ from its preset."""

    name: str
    method: str
    options: dict = field(default_factory=dict, hash=False)

    @property
    def slug(self) -> str:
        keep = "".join(ch if ch.isalnum() else "-" for ch in self.name.lower())
        return "-".join(part for part in keep.split("-") if part)


ABLATION: list[Row] = [
    Row("zero-shot", "zeroshot"),
    Row("CoOp", "coop"),
    Row("CE only (= CoOp)", "dvpt", PLAIN),
    Row("+MI infonce", "dvpt", PLAIN | {"mi": "infonce"}),
    Row("+MI iic", "dvpt", PLAIN | {"mi": "iic"}),
    Row("+aug proto", "dvpt", PLAIN | {"visual_aug": "proto"}),
    Row("+aug mixup", "dvpt", PLAIN | {"visual_aug": "mixup"}),
    Row("+ensemble inference", "dvpt", PLAIN | {"infer": "ensemble"}),
    Row("full (defaults)", "dvpt"),
]


def _grid(key: str, values: Sequence[Any], base: dict) -> list[Row]:
    return [Row(f"{key}={v}; {' '.join(f'{k}={x}' for k, x in base.items())}", "dvpt", base | {key: v})
            for v in values]


_INFONCE = PLAIN | {"mi": "infonce"}
_IIC = PLAIN | {"mi": "iic"}
_PROTO = PLAIN | {"visual_aug": "proto"}
_MIXUP = PLAIN | {"visual_aug": "mixup"}
_ENSEMBLE = PLAIN | {"infer": "ensemble"}
TUNE: list[Row] = [
    Row("zero-shot", "zeroshot"),
    Row("CoOp", "coop"),
    *_grid("lambda_mi", [1.0, 4.0], _INFONCE),
    *_grid("lambda_mi", [1.0], _IIC),
    *_grid("proxy_prob", [0.5], _PROTO),
    *_grid("proto_eval", ["proxy"], _PROTO),
    *_grid("lambda_aug", [1.0], _MIXUP),
    *_grid("ensemble_weight", [0.25, 0.5, 0.75], _ENSEMBLE),
    # combinations (MI at lambda 1 unless stated, ensemble weight 0.75, as they were run)
    *[Row(f"combo {mi}+{aug}+{infer}", "dvpt", {"mi": mi, "lambda_mi": 1.0, "visual_aug": aug, "infer": infer,
                                               "ensemble_weight": 0.75})
      for mi, aug, infer in [("infonce", "proto", "ensemble"), ("iic", "mixup", "ensemble"),
                             ("infonce", "proto", "soft"), ("none", "proto", "ensemble"), ("iic", "proto", "ensemble")]],
    Row("combo infonce(0.25)+proto+ensemble", "dvpt",
        {"mi": "infonce", "lambda_mi": 0.25, "visual_aug": "proto", "infer": "ensemble", "ensemble_weight": 0.75}),
    # bounding proto's shift (proto_max_ratio), against what the reported ablation found best;
    # run on seeds 4 and 5 of both reported datasets (held-out few-shot samples)
    *[Row(f"bound r={r}; infonce(0.25)+proto+ensemble", "dvpt",
          {"mi": "infonce", "lambda_mi": 0.25, "visual_aug": "proto", "proto_max_ratio": r, "infer": "ensemble",
           "ensemble_weight": 0.75}) for r in (0.0, 0.1, 0.25, 0.5)],
    Row("bound baseline: ensemble only", "dvpt", _ENSEMBLE | {"ensemble_weight": 0.75}),
    Row("bound baseline: infonce(0.25)+ensemble", "dvpt",
        _ENSEMBLE | {"mi": "infonce", "lambda_mi": 0.25, "ensemble_weight": 0.75}),
]

#: the training budget of every ablation run (all rows alike), shared with `dvpt demo` and the
#: offline sweep; why it is what it is: the file's own comment and docs/method.md.
BUDGET = PRESET_DIR / "offline.yaml"

SPECS: dict[str, list[Row]] = {"ablation": ABLATION, "tune": TUNE}


@dataclass
class Plan:
    rows: list[Row]
    datasets: list[str]
    seeds: list[int]
    output: Path
    backbone: str = "micro"
    #: ``key.path=value`` overrides applied to every run after ``BUDGET`` (e.g. optim.epochs=10)
    overrides: list[str] = field(default_factory=list)
    threads: int | None = None

    def folder(self, row: Row, dataset: str, seed: int) -> Path:
        return self.output / row.slug / dataset / f"seed{seed}"


def select_rows(spec: str, names: Sequence[str] | None = None) -> list[Row]:
    if spec not in SPECS:
        raise ConfigError(f"unknown ablation spec {spec!r}; known: {', '.join(SPECS)}")
    rows = SPECS[spec]
    if not names:
        return list(rows)
    by_slug = {r.slug: r for r in rows} | {r.name: r for r in rows}
    unknown = [n for n in names if n not in by_slug]
    if unknown:
        raise ConfigError(f"unknown row(s) {unknown}; rows of {spec!r}: {', '.join(r.slug for r in rows)}")
    return [by_slug[n] for n in names]


def row_config(plan: Plan, row: Row, dataset: str, seed: int):
    flags: dict[str, Any] = {"method": row.method, "backbone": plan.backbone, "protocol": "base2novel",
                             "seed": seed, "data": {"dataset": dataset}, "options": dict(row.options)}
    if plan.threads:
        flags["threads"] = plan.threads
    return build_config(method=row.method, files=[str(BUDGET)], flags=flags, overrides=plan.overrides)


def run_plan(plan: Plan) -> list[dict[str, Any]]:
    """Run every (row, dataset, seed) not yet finished; returns one record per cell."""
    stores: dict[str, FeatureStore] = {}
    records = []
    started = time.time()
    for dataset in plan.datasets:
        for seed in plan.seeds:
            for row in plan.rows:
                cfg = row_config(plan, row, dataset, seed)
                session = Session(cfg)
                session.store = stores.setdefault(cfg.backbone, session.store)  # features computed once
                metrics = run_training(cfg, plan.folder(row, dataset, seed), session=session)
                records.append({"row": row.name, "dataset": dataset, "seed": seed, "base": metrics["base"],
                                "novel": metrics["novel"], "hm": metrics["hm"],
                                "seconds": metrics.get("seconds"), "folder": metrics.get("output")})
                log.info("%s %s seed %d: base %.2f novel %.2f hm %.2f", row.name, dataset, seed,
                         metrics["base"], metrics["novel"], metrics["hm"])
    log.info("ablation: %d runs in %.0f s", len(records), time.time() - started)
    return records


# ---- the table -------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1, as CoOp's parse script); 0 spread for one value."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: Sequence[dict[str, Any]], rows: Sequence[str], datasets: Sequence[str]) -> dict:
    """{row: {dataset | "average": {"base"|"novel"|"hm": (mean, std)}}}.

    Per dataset: mean +- std over seeds of B, N and the per-seed HM. Average: B and N are the
    means over datasets, HM is the HM of those two means; the spread shown is the std over
    seeds of the same quantities computed seed by seed."""
    out: dict = {}
    for row in rows:
        cells = [r for r in records if r["row"] == row]
        table = {}
        for dataset in datasets:
            mine = [r for r in cells if r["dataset"] == dataset]
            if mine:
                table[dataset] = {k: mean_std([r[k] for r in mine]) for k in ("base", "novel", "hm")}
        if table:
            base = statistics.fmean(table[d]["base"][0] for d in table)
            novel = statistics.fmean(table[d]["novel"][0] for d in table)
            table["average"] = {"base": (base, _seed_spread(cells, "base")),
                                "novel": (novel, _seed_spread(cells, "novel")),
                                "hm": (harmonic_mean(base, novel), _seed_spread(cells, "hm"))}
        out[row] = table
    return out


def _seed_spread(cells: Sequence[dict[str, Any]], key: str) -> float:
    """Std over seeds of the dataset-averaged B, N, or HM of those (the average's spread)."""
    per_seed = []
    for seed in sorted({r["seed"] for r in cells}):
        mine = [r for r in cells if r["seed"] == seed]
        b = statistics.fmean(r["base"] for r in mine)
        n = statistics.fmean(r["novel"] for r in mine)
        per_seed.append({"base": b, "novel": n, "hm": harmonic_mean(b, n)}[key])
    return mean_std(per_seed)[1]


def markdown(summary: dict, datasets: Sequence[str]) -> str:
    """One markdown table: rows x (dataset: B / N / HM, ..., average: B / N / HM)."""
    columns = [d for d in [*datasets, "average"] if any(d in t for t in summary.values())]
    head = "| row | " + " | ".join(f"{d} B | {d} N | {d} HM" for d in columns) + " |"
    sep = "|---" * (1 + 3 * len(columns)) + "|"
    lines = [head, sep]
    for row, table in summary.items():
        cells = []
        for d in columns:
            for k in ("base", "novel", "hm"):
                cells.append(f"{table[d][k][0]:.2f} ± {table[d][k][1]:.2f}" if d in table else "-")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(plan: Plan, records: Sequence[dict[str, Any]]) -> str:
    rows = [r.name for r in plan.rows]
    summary = summarise(records, rows, plan.datasets)
    table = markdown(summary, plan.datasets)
    write_json(plan.output / "ablation.json", {"rows": [{"name": r.name, "method": r.method, "options": r.options,
                                                        "folder": r.slug} for r in plan.rows],
                                               "datasets": plan.datasets, "seeds": plan.seeds,
                                               "backbone": plan.backbone, "overrides": plan.overrides,
                                               "records": list(records)})
    write_text(plan.output / "table.md", table)
    return table
