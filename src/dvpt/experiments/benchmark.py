"""``dvpt benchmark``: the reported offline runs, one JSON line per finished run.

Every (dataset, method, seed) of presets/benchmark.yaml trains into an ordinary run folder
under ``<output>/runs`` and, once finished, appends one line to ``<output>/results.jsonl``
(dataset, domain, protocol, method, seed, shots, base, novel, hm, train_acc, seconds and the
resolved hyperparameters). The lines are the results: tables are rebuilt from them alone,
so the file is small enough to commit. Re-running the command skips every run that already
has its line, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config.loader import PRESET_DIR, build_config, method_preset, read_yaml, to_dict
from ..engine.runner import run_training
from ..errors import ConfigError, DataError
from ..files import json_text, make_folder
from ..methods import METHODS
# the tables read result files and never run anything; re-exported for callers of this module
from .benchmark_tables import (ABLATION_REFERENCE, BEGIN, END, bootstrap_ci, curve_table,  # noqa: F401
                               paired_differences, read_result_dir, read_results, render_results, row_table,
                               selected_row, summary_table, update_doc)

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
PROTOCOLS = ("base2novel",)
REFERENCE = "dvpt"


@dataclass
class BenchmarkPlan:
    backbone: str
    shots: int
    domain: str
    test_per_class: int
    seeds: list[int]
    datasets: list[str]
    methods: list[str]
    #: ``key.path=value`` overrides every run gets after the rule (e.g. the quick plan's budget)
    budget: list[str]
    protocol: str = "base2novel"
    #: the rule: one batch size, epoch count and precision for every method
    batch_size: int = 64
    epochs: int = 5
    precision: str = "auto"
    #: each method's lr = its anchor (``anchor_lr``) times its scale, chosen on the tuning data
    lr_scale: dict[str, float] = field(default_factory=dict)
    #: the scales every method tries on the tuning data (the same grid for all)
    lr_grid: list[float] = field(default_factory=lambda: [1.0])


def anchor_lr(method: str, batch_size: int, epochs: int) -> float | None:
    """The method's published lr carried to the common batch and epoch count; None = nothing trains.

    Linear scaling in both: ``lr x batch / published batch`` keeps the per-image step, and
    ``x published epochs / epochs`` keeps the recipe's total step length (lr summed over its
    epochs) when every method gets the same, shorter number of epochs. A recipe of 200
    epochs (CoOp) and one of 5 (MaPLe) are thus shortened or lengthened by the same rule.
    """
    optim = method_preset(method).get("optim", {})
    if not optim.get("epochs"):
        return None
    return float(optim["lr"]) * batch_size / int(optim["batch_size"]) * int(optim["epochs"]) / epochs


def method_lr(plan: BenchmarkPlan, method: str, scale: float | None = None) -> float | None:
    """The lr ``method`` trains with under the plan's rule (its chosen scale unless ``scale``)."""
    anchor = anchor_lr(method, plan.batch_size, plan.epochs)
    if anchor is None:
        return None
    return anchor * (plan.lr_scale.get(method, 1.0) if scale is None else scale)


def load_plan(quick: bool = False, tuning: bool = False, protocol: str = "base2novel",
              methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              datasets: Sequence[str] | None = None) -> BenchmarkPlan:
    """The plan of presets/benchmark.yaml; ``tuning`` swaps in the never-reported tuning data."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"benchmark protocol {protocol!r} is not available; choose one of {', '.join(PROTOCOLS)}")
    spec = read_yaml(PRESET_DIR / "benchmark.yaml")
    if tuning:
        spec = {**spec, **spec["tuning"]}
    if quick:
        spec = {**spec, **spec["quick"]}
    wanted = list(methods or spec["methods"])
    unknown = [m for m in wanted if m not in METHODS or (m != "zeroshot" and not method_preset(m))]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; see `dvpt methods`")
    rule = spec.get("rule", {})
    return BenchmarkPlan(
        backbone=spec["backbone"], shots=int(spec["shots"]), domain=spec["domain"],
        test_per_class=int(spec["test_per_class"]), seeds=[int(s) for s in (seeds or spec["seeds"])],
        datasets=list(datasets or spec["datasets"]), methods=wanted, budget=list(spec.get("budget", [])),
        protocol=protocol, batch_size=int(rule.get("batch_size", 64)), epochs=int(rule.get("epochs", 5)),
        precision=str(rule.get("precision", "auto")),
        lr_scale={str(k): float(v) for k, v in (spec.get("lr_scale") or {}).items()},
        lr_grid=[float(v) for v in rule.get("lr_grid", [1.0])],
    )


def run_config(plan: BenchmarkPlan, method: str, dataset: str, seed: int, output: Path,
               scale: float | None = None, extra: Sequence[str] = ()):
    """The method's preset, the shared offline file, the plan's rule, then its budget overrides.

    The rule sets the same batch, epochs, precision and no warm-up for every method, and the
    method's own lr (``method_lr``); ``scale`` replaces the chosen lr scale (the tuning grid).
    """
    flags = {"backbone": plan.backbone, "protocol": plan.protocol, "seed": seed, "precision": plan.precision,
             "data": {"dataset": dataset, "shots": plan.shots,
                      "options": {"domain": plan.domain, "test_per_class": plan.test_per_class}},
             "optim": {"batch_size": plan.batch_size, "epochs": plan.epochs, "warmup_epochs": 0},
             "cache": {"dir": str(output / "feature-cache")}}
    lr = method_lr(plan, method, scale)
    if lr is not None:
        flags["optim"]["lr"] = lr
    return build_config(method=method, files=[str(PRESET_DIR / "offline.yaml")], flags=flags,
                        overrides=[*plan.budget, *extra])


def job_key(record: dict[str, Any]) -> tuple:
    return (record["protocol"], record["dataset"], record["domain"], record["method"], int(record["seed"]),
            int(record["shots"]))


def _append(path: Path, record: dict[str, Any]) -> None:
    """One whole line per call, flushed and synced: a crash never leaves half a record."""
    make_folder(path.parent)
    with open(path, "a") as handle:
        handle.write(json_text(record, path, indent=None, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def record_of(cfg, metrics: dict[str, Any], plan: BenchmarkPlan, scale: float | None = None) -> dict[str, Any]:
    resolved = to_dict(cfg)
    trains = anchor_lr(cfg.method, plan.batch_size, plan.epochs) is not None
    return {
        "protocol": plan.protocol, "dataset": cfg.data.dataset, "domain": plan.domain, "method": cfg.method,
        "seed": cfg.seed, "shots": plan.shots, "test_per_class": plan.test_per_class, "backbone": plan.backbone,
        "base": metrics["base"], "novel": metrics["novel"], "hm": metrics["hm"],
        "train_acc": metrics.get("train_acc"), "seconds": metrics.get("seconds"),
        "lr_scale": (plan.lr_scale.get(cfg.method, 1.0) if scale is None else scale) if trains else None,
        "hyperparameters": {"optim": resolved["optim"], "options": resolved["options"],
                            "precision": resolved["precision"]},
    }


def with_scales_from(plan: BenchmarkPlan, tuning_file: Path) -> BenchmarkPlan:
    """The plan with each method's best scale in ``tuning_file`` (a ``run_lr_grid`` output).

    Lets the reported pass start the moment tuning ends; the preset's ``lr_scale`` is then
    written from the same file, and a test checks the two agree.
    """
    records = read_results(tuning_file)
    if not records:
        raise DataError(f"{tuning_file} holds no tuning runs; run `dvpt benchmark --tuning --lr-grid -o DIR` first")
    scales = chosen_scales(records)
    trained = [m for m in plan.methods if anchor_lr(m, plan.batch_size, plan.epochs) is not None]
    missing = [m for m in trained if m not in scales]
    if missing:
        raise DataError(f"{tuning_file} has no tuning runs of {', '.join(missing)}; "
                        "run `dvpt benchmark --tuning --lr-grid` for them or drop them with --methods")
    grids = {m: len({float(r["lr_scale"]) for r in records if r["method"] == m}) for m in trained}
    if len(set(grids.values())) > 1:
        raise DataError(f"{tuning_file}: the methods did not try the same number of scales ({grids}); "
                        "finish the grid before choosing from it")
    return BenchmarkPlan(**{**plan.__dict__, "lr_scale": {m: scales[m] for m in trained}})


def run_lr_grid(plan: BenchmarkPlan, output: Path) -> list[dict[str, Any]]:
    """Every trained method at every scale of the plan's grid, into ``<output>/tuning.jsonl``.

    Meant for the tuning data (``--tuning``): the same number of trials for every method,
    each around its own anchor lr; ``chosen_scales`` then picks each method's best HM.
    """
    results = output / "tuning.jsonl"
    done = {job_key(r) + (float(r["lr_scale"]),) for r in read_results(results)}
    trained = [m for m in plan.methods if anchor_lr(m, plan.batch_size, plan.epochs) is not None]
    for scale in plan.lr_grid:
        for dataset in plan.datasets:
            for seed in plan.seeds:
                for method in trained:
                    if (plan.protocol, dataset, plan.domain, method, seed, plan.shots, float(scale)) in done:
                        continue
                    cfg = run_config(plan, method, dataset, seed, output, scale=scale)
                    folder = output / "runs" / "tuning" / f"x{scale:g}" / dataset / method / f"seed{seed}"
                    metrics = run_training(cfg, folder)
                    _append(results, record_of(cfg, metrics, plan, scale=scale))
                    log.info("tuning %s %s seed %d lr x%g: hm %.2f", dataset, method, seed, scale, metrics["hm"])
    return read_results(results)


def chosen_scales(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Each method's grid scale with the best mean tuning HM (ties: the smaller scale)."""
    means: dict[str, dict[float, list[float]]] = {}
    for r in records:
        means.setdefault(r["method"], {}).setdefault(float(r["lr_scale"]), []).append(float(r["hm"]))
    return {m: min(by, key=lambda s: (-statistics.fmean(by[s]), s)) for m, by in means.items()}


def run_budget_curve(plan: BenchmarkPlan, epochs: Sequence[int], output: Path) -> list[dict[str, Any]]:
    """The plan once per epoch count, into ``<output>/budget-curve.jsonl`` (lines carry ``epochs``).

    Meant for the tuning data (``--tuning``): it shows where the shared budget sits on each
    method's curve and whether CoOp's novel accuracy has stopped moving.
    """
    results = output / "budget-curve.jsonl"
    done = {job_key(r) + (r["epochs"],) for r in read_results(results)}
    for count in epochs:
        for dataset in plan.datasets:
            for seed in plan.seeds:
                for method in plan.methods:
                    if (plan.protocol, dataset, plan.domain, method, seed, plan.shots, int(count)) in done:
                        continue
                    # the lr stays the one the rule gives at its own epoch count: only the length moves
                    cfg = run_config(plan, method, dataset, seed, output, extra=[f"optim.epochs={int(count)}"])
                    folder = output / "runs" / "curve" / f"e{int(count)}" / dataset / method / f"seed{seed}"
                    metrics = run_training(cfg, folder)
                    _append(results, {**record_of(cfg, metrics, plan), "epochs": int(count)})
    return read_results(results)


def run_benchmark(plan: BenchmarkPlan, output: Path, workers: int = 1) -> list[dict[str, Any]]:
    """Run every job without a line in ``<output>/results.jsonl``; returns all lines.

    ``workers > 1`` runs the jobs on that many long-lived worker processes of one torch
    thread each (the sweep's ``WorkerProcess``); this process alone appends the lines, so they
    never interleave, and a run that fails leaves no line (re-running retries it).
    """
    results = output / RESULTS
    done = {job_key(r) for r in read_results(results)}
    jobs = [(d, m, s) for d in plan.datasets for s in plan.seeds for m in plan.methods
            if (plan.protocol, d, plan.domain, m, s, plan.shots) not in done]
    if workers < 1:
        raise ConfigError(f"--workers {workers}: give 1 or more worker processes")
    started = time.time()
    if workers > 1:
        _run_pool(plan, output, jobs, workers)
    else:
        for dataset, method, seed in jobs:
            cfg = run_config(plan, method, dataset, seed, output)
            folder = output / "runs" / plan.protocol / dataset / method / f"seed{seed}"
            _finish(plan, results, cfg, run_training(cfg, folder))
    log.info("benchmark pass finished in %.0f s", time.time() - started)
    return read_results(results)


def _finish(plan: BenchmarkPlan, results: Path, cfg, metrics: dict[str, Any]) -> None:
    _append(results, record_of(cfg, metrics, plan))
    log.info("%s %s seed %d: base %.2f novel %.2f hm %.2f train %.1f", cfg.data.dataset, cfg.method, cfg.seed,
             metrics["base"], metrics["novel"], metrics["hm"], metrics.get("train_acc") or float("nan"))


def _run_pool(plan: BenchmarkPlan, output: Path, jobs: list[tuple[str, str, int]], workers: int) -> None:
    """The jobs on ``workers`` worker processes; failures are collected and reported at the end."""
    import queue
    import threading

    from ..engine.io import read_json, write_yaml
    from ..sweep.worker import Task, WorkerProcess

    # Every config is built here, before any thread starts: building one imports the registries
    # lazily, which is not safe from two threads at once, and a bad config fails before any work.
    configs = {job: run_config(plan, job[1], job[0], job[2], output) for job in jobs}
    todo: queue.Queue = queue.Queue()
    for job in jobs:
        todo.put(job)
    lock, failed = threading.Lock(), []

    def drive() -> None:
        worker = WorkerProcess(threads=1)
        try:
            while True:
                try:
                    dataset, method, seed = todo.get_nowait()
                except queue.Empty:
                    return
                cfg = configs[(dataset, method, seed)]
                folder = output / "runs" / plan.protocol / dataset / method / f"seed{seed}"
                config = write_yaml(output / "configs" / f"{dataset}-{method}-seed{seed}.yaml", to_dict(cfg))
                outcome = worker.run(Task(f"{dataset}/{method}/seed{seed}", str(config.resolve()),
                                          str(folder.resolve()), str((folder.parent / f"seed{seed}.log").resolve())))
                with lock:
                    if outcome.finished:
                        _finish(plan, output / RESULTS, cfg, read_json(folder / "metrics.json"))
                    else:
                        failed.append(f"{outcome.name}: {outcome.error}")
                    if not worker.alive():
                        worker = WorkerProcess(threads=1)
        except Exception as exc:  # a driver thread must not die silently and leave its jobs undone
            with lock:
                failed.append(f"worker driver: {type(exc).__name__}: {exc}")
        finally:
            worker.stop()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(min(workers, len(jobs)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise DataError(f"{len(failed)} benchmark run(s) failed, no line written for them (re-run to retry): "
                        + "; ".join(failed))
