"""``dvpt benchmark``: the reported offline runs, one JSON line per finished run.

Every job of presets/benchmark.yaml trains into an ordinary run folder under
``<output>/runs`` and, once finished, appends one line to its protocol's results file:

* base-to-novel, one job per (dataset, method, seed): ``<output>/results.jsonl`` (dataset,
  domain, protocol, method, seed, shots, base, novel, hm, train_acc, seconds and the resolved
  hyperparameters);
* transfer, one job per (method, seed) tuned on all classes of ``transfer.source``:
  ``<output>/transfer.jsonl``; one training run gives both the cross-dataset targets (other
  groups, their own classes) and the domain-generalisation targets (the source's classes
  in the ``line`` domain and at a harder difficulty), so ``--protocol crossdataset`` and
  ``--protocol domaingen`` run the same jobs;
* few-shot, one job per (dataset, method, seed, shots) on all classes, zero-shot once per
  (dataset, seed) with ``shots`` 0: ``<output>/fewshot.jsonl``.

The lines are the results: tables are rebuilt from them alone, so the files are small
enough to commit (under ``docs/results/`` as ``base2novel.jsonl``, ``transfer.jsonl`` and
``fewshot.jsonl``). Re-running the command skips every job that already has its line, so an
interrupted benchmark continues where it stopped.
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
#: where each job kind appends its lines (base-to-novel keeps the file name it always had)
RESULT_FILES = {"base2novel": RESULTS, "transfer": "transfer.jsonl", "fewshot": "fewshot.jsonl"}
#: ``--protocol`` -> the job kinds it runs (cross-dataset and domain generalisation share one training run)
PROTOCOLS = {"base2novel": ("base2novel",), "crossdataset": ("transfer",), "domaingen": ("transfer",),
             "fewshot": ("fewshot",), "all": ("base2novel", "transfer", "fewshot")}
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
    #: transfer: the group tuned on (all classes), the other groups (their own classes, color)
    #: and the shifted targets of the source's classes (``name@domain[?options]``)
    transfer_source: str = "emoji-animals"
    crossdataset_targets: list[str] = field(default_factory=list)
    domaingen_targets: list[str] = field(default_factory=list)
    #: few-shot: the groups and shot counts (all classes)
    fewshot_datasets: list[str] = field(default_factory=list)
    fewshot_shots: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """One run of the benchmark: its kind (``RESULT_FILES``), dataset, method, seed and shots."""

    kind: str
    dataset: str
    method: str
    seed: int
    shots: int

    @property
    def name(self) -> str:
        shots = f"-{self.shots}shot" if self.kind == "fewshot" else ""
        return f"{self.kind}-{self.dataset}-{self.method}-seed{self.seed}{shots}"

    def folder(self, output: Path) -> Path:
        leaf = output / "runs" / self.kind / self.dataset / self.method
        return leaf / (f"{self.shots}shot-seed{self.seed}" if self.kind == "fewshot" else f"seed{self.seed}")

    def key(self, plan: "BenchmarkPlan") -> tuple:
        return (self.kind, self.dataset, plan.domain, self.method, self.seed, self.shots)


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
        quick_spec = spec["quick"]
        spec = {**spec, **quick_spec, "transfer": {**spec["transfer"], **quick_spec.get("transfer", {})},
                "fewshot": {**spec["fewshot"], **quick_spec.get("fewshot", {})}}
    wanted = list(methods or spec["methods"])
    unknown = [m for m in wanted if m not in METHODS or (m != "zeroshot" and not method_preset(m))]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; see `dvpt methods`")
    rule = spec.get("rule", {})
    transfer, fewshot = spec.get("transfer", {}), spec.get("fewshot", {})
    if datasets and PROTOCOLS[protocol] != ("base2novel",):
        raise ConfigError(f"--datasets picks base-to-novel groups; for --protocol {protocol} set `transfer:` and "
                          "`fewshot:` in presets/benchmark.yaml (or leave --datasets out)")
    return BenchmarkPlan(
        backbone=spec["backbone"], shots=int(spec["shots"]), domain=spec["domain"],
        test_per_class=int(spec["test_per_class"]), seeds=[int(s) for s in (seeds or spec["seeds"])],
        datasets=list(datasets or spec["datasets"]), methods=wanted, budget=list(spec.get("budget", [])),
        protocol=protocol, batch_size=int(rule.get("batch_size", 64)), epochs=int(rule.get("epochs", 5)),
        precision=str(rule.get("precision", "auto")),
        lr_scale={str(k): float(v) for k, v in (spec.get("lr_scale") or {}).items()},
        lr_grid=[float(v) for v in rule.get("lr_grid", [1.0])],
        transfer_source=str(transfer.get("source", "emoji-animals")),
        crossdataset_targets=[str(t) for t in transfer.get("crossdataset", [])],
        domaingen_targets=[str(t) for t in transfer.get("domaingen", [])],
        fewshot_datasets=[str(d) for d in fewshot.get("datasets", [])],
        fewshot_shots=[int(k) for k in fewshot.get("shots", [])],
    )


def plan_jobs(plan: BenchmarkPlan) -> list[Job]:
    """Every job of the plan's protocol, in run order (dataset, seed, then method)."""
    jobs: list[Job] = []
    for kind in PROTOCOLS[plan.protocol]:
        if kind == "base2novel":
            jobs += [Job(kind, d, m, s, plan.shots) for d in plan.datasets for s in plan.seeds for m in plan.methods]
        elif kind == "transfer":
            jobs += [Job(kind, plan.transfer_source, m, s, plan.shots) for s in plan.seeds for m in plan.methods]
        else:  # few-shot: zero-shot trains nothing, so it runs once per (dataset, seed), as shots 0
            for d in plan.fewshot_datasets:
                for s in plan.seeds:
                    jobs += [Job(kind, d, m, s, 0) for m in plan.methods if anchor_lr(m, 1, 1) is None]
                    jobs += [Job(kind, d, m, s, k) for k in plan.fewshot_shots for m in plan.methods
                             if anchor_lr(m, 1, 1) is not None]
    return jobs


def run_config(plan: BenchmarkPlan, method: str, dataset: str, seed: int, output: Path,
               scale: float | None = None, extra: Sequence[str] = (), job: Job | None = None):
    """The method's preset, the shared offline file, the plan's rule, then its budget overrides.

    The rule sets the same batch, epochs, precision and no warm-up for every method, and the
    method's own lr (``method_lr``); ``scale`` replaces the chosen lr scale (the tuning grid).
    ``job`` picks the run's protocol: base-to-novel (default), ``transfer`` (all classes of
    the source, then the plan's targets) or few-shot (the ``all`` protocol at the job's shots;
    zero-shot, shots 0, samples the plan's 16 shots it never trains on).
    """
    kind = job.kind if job else "base2novel"
    protocol = {"base2novel": "base2novel", "transfer": "transfer", "fewshot": "all"}[kind]
    shots = job.shots if job and job.shots > 0 else plan.shots
    flags = {"backbone": plan.backbone, "protocol": protocol, "seed": seed, "precision": plan.precision,
             "data": {"dataset": dataset, "shots": shots,
                      "options": {"domain": plan.domain, "test_per_class": plan.test_per_class}},
             "optim": {"batch_size": plan.batch_size, "epochs": plan.epochs, "warmup_epochs": 0},
             "cache": {"dir": str(output / "feature-cache")}}
    if kind == "transfer":
        flags["targets"] = [*plan.crossdataset_targets, *plan.domaingen_targets]
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


def record_of(cfg, metrics: dict[str, Any], plan: BenchmarkPlan, scale: float | None = None,
              job: Job | None = None) -> dict[str, Any]:
    """The results line of one finished run: its key, its scores, its time and hyperparameters."""
    resolved = to_dict(cfg)
    trains = anchor_lr(cfg.method, plan.batch_size, plan.epochs) is not None
    kind = job.kind if job else "base2novel"
    if kind == "transfer":
        scores = {"source": metrics["source_accuracy"], "crossdataset": metrics["crossdataset"],
                  "crossdataset_mean": metrics["crossdataset_mean"], "domaingen": metrics["domaingen"],
                  "domaingen_mean": metrics["domaingen_mean"]}
    elif kind == "fewshot":
        scores = {"accuracy": metrics["accuracy"]}
    else:
        scores = {"base": metrics["base"], "novel": metrics["novel"], "hm": metrics["hm"]}
    return {
        "protocol": kind, "dataset": cfg.data.dataset, "domain": plan.domain, "method": cfg.method,
        "seed": cfg.seed, "shots": job.shots if job else plan.shots, "test_per_class": plan.test_per_class,
        "backbone": plan.backbone, **scores,
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
    _base2novel_only(plan, "--lr-grid")
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


def _base2novel_only(plan: BenchmarkPlan, flag: str) -> None:
    if plan.protocol != "base2novel":
        raise ConfigError(f"{flag} runs on base-to-novel only, not --protocol {plan.protocol}; leave --protocol out")


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
    _base2novel_only(plan, "--epochs")
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
    """Run every job of the plan without a line in its results file; returns all lines of those files.

    ``workers > 1`` runs the jobs on that many long-lived worker processes of one torch
    thread each (the sweep's ``WorkerProcess``); this process alone appends the lines, so they
    never interleave, and a run that fails leaves no line (re-running retries it).
    """
    if workers < 1:
        raise ConfigError(f"--workers {workers}: give 1 or more worker processes")
    kinds = PROTOCOLS[plan.protocol]
    done = {job_key(r) for kind in kinds for r in read_results(output / RESULT_FILES[kind])}
    jobs = [job for job in plan_jobs(plan) if job.key(plan) not in done]
    started = time.time()
    if workers > 1:
        _run_pool(plan, output, jobs, workers)
    else:
        for job in jobs:
            cfg = run_config(plan, job.method, job.dataset, job.seed, output, job=job)
            _finish(plan, output, job, cfg, run_training(cfg, job.folder(output)))
    log.info("benchmark pass finished in %.0f s", time.time() - started)
    return [r for kind in kinds for r in read_results(output / RESULT_FILES[kind])]


def _finish(plan: BenchmarkPlan, output: Path, job: Job, cfg, metrics: dict[str, Any]) -> None:
    record = record_of(cfg, metrics, plan, job=job)
    _append(output / RESULT_FILES[job.kind], record)
    score = {"base2novel": "hm", "transfer": "crossdataset_mean", "fewshot": "accuracy"}[job.kind]
    log.info("%s: %s %.2f train %.1f", job.name, score, record[score],
             metrics.get("train_acc") or float("nan"))


def _run_pool(plan: BenchmarkPlan, output: Path, jobs: list[Job], workers: int) -> None:
    """The jobs on ``workers`` worker processes; failures are collected and reported at the end."""
    import queue
    import threading

    from ..engine.io import read_json, write_yaml
    from ..sweep.worker import Task, WorkerProcess

    # Every config is built here, before any thread starts: building one imports the registries
    # lazily, which is not safe from two threads at once, and a bad config fails before any work.
    configs = {job: run_config(plan, job.method, job.dataset, job.seed, output, job=job) for job in jobs}
    todo: queue.Queue = queue.Queue()
    for job in jobs:
        todo.put(job)
    lock, failed = threading.Lock(), []

    def drive() -> None:
        worker = WorkerProcess(threads=1)
        try:
            while True:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                cfg = configs[job]
                folder = job.folder(output)
                config = write_yaml(output / "configs" / f"{job.name}.yaml", to_dict(cfg))
                outcome = worker.run(Task(job.name, str(config.resolve()), str(folder.resolve()),
                                          str((folder.parent / f"{folder.name}.log").resolve())))
                with lock:
                    if outcome.finished:
                        _finish(plan, output, job, cfg, read_json(folder / "metrics.json"))
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
