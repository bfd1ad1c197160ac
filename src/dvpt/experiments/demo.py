"""``dvpt demo``: the main job on the offline default.

Base-to-novel on a few emoji datasets with the ``micro`` backbone, for zero-shot, CoOp and
every other registered method with a preset, one ordinary run folder each; then a table
(dataset x method: base, novel, HM and the average), ``results.json``, ``results.md`` and
a plot. Finished run folders are reused, so an interrupted demo continues where it stopped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config.loader import PRESET_DIR, build_config, method_preset, read_yaml
from ..engine import io
from ..engine.progress import progress
from ..engine.runner import run_training
from ..errors import ConfigError
from ..methods import METHODS

log = logging.getLogger(__name__)


@dataclass
class DemoPlan:
    backbone: str
    shots: int
    seeds: list[int]
    datasets: list[str]
    methods: list[str]
    #: ``key.path=value`` overrides every run gets on top of presets/offline.yaml
    budget: list[str]


def load_plan(quick: bool = False, datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None, backbone: str | None = None) -> DemoPlan:
    spec = read_yaml(PRESET_DIR / "demo.yaml")
    if quick:
        spec = {**spec, **spec.get("quick", {})}
    wanted = list(methods or spec["methods"])
    unknown = [m for m in wanted if m not in METHODS]
    if methods and unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; see `dvpt methods`")
    runnable = [m for m in wanted if m in METHODS and (m == "zeroshot" or method_preset(m))]
    return DemoPlan(
        backbone=backbone or spec["backbone"],
        shots=int(spec["shots"]),
        seeds=list(seeds or spec["seeds"]),
        datasets=list(datasets or spec["datasets"]),
        methods=runnable,
        budget=list(spec.get("budget", [])),
    )


def run_config(plan: DemoPlan, method: str, dataset: str, seed: int, output: Path, overrides: Sequence[str] = ()):
    """The run's config: the method's preset, the demo's budget, then the user's overrides.

    Frozen features go to ``<output>/feature-cache``: every method of a (dataset, seed) uses the
    same few-shot images, so the image tower runs over them once for the whole demo.
    """
    flags = {"backbone": plan.backbone, "protocol": "base2novel", "seed": seed,
             "data": {"dataset": dataset, "shots": plan.shots},
             "cache": {"dir": str(output / "feature-cache")}}
    return build_config(method=method, files=[str(PRESET_DIR / "offline.yaml")], flags=flags,
                        overrides=[*plan.budget, *overrides])


def run_demo(plan: DemoPlan, output: Path, overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run every (dataset, method, seed); returns one record per run (percentages)."""
    jobs = [(d, m, s) for d in plan.datasets for m in plan.methods for s in plan.seeds]
    records = []
    started = time.time()
    for dataset, method, seed in progress(jobs, desc="demo runs", total=len(jobs), leave=True):
        cfg = run_config(plan, method, dataset, seed, output, overrides)
        metrics = run_training(cfg, output / "runs" / dataset / method / f"seed{seed}")
        records.append({
            "dataset": dataset, "method": method, "seed": seed,
            "base": metrics["base"], "novel": metrics["novel"], "hm": metrics["hm"],
            "seconds": metrics.get("seconds"), "run": metrics.get("output"),
        })
        log.info("%s %s seed %d: base %.1f novel %.1f hm %.1f", dataset, method, seed,
                 metrics["base"], metrics["novel"], metrics["hm"])
    log.info("demo finished in %.0f s", time.time() - started)
    return records


def write_outputs(records: list[dict[str, Any]], output: Path, plan: DemoPlan, command: str) -> str:
    """results.json, results.md and results.png; returns the markdown table."""
    from ..report.plots import hm_bar
    from ..report.render import markdown
    from ..report.tables import base2novel_table

    io.write_json(output / "results.json", records)
    table = base2novel_table(records, title=f"Base-to-novel on the emoji benchmark ({plan.backbone}, "
                                            f"{plan.shots} shots)")
    text = markdown(table)
    header = f"# dvpt demo\n\nCommand: `{command}`\n\n"
    io.write_text(output / "results.md", header + text + "\n")
    hm_bar(table, output / "results.png")
    return text
