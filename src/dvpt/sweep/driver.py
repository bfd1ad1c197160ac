"""The sweep loop: skip finished runs, keep the pool full, retry a failed run once.

Resuming is the same command again: a run folder with ``metrics.json`` is skipped without
starting anything; a run with a checkpoint is started and the engine resumes it from there.
A run that fails is retried once, except on a user error (exit code 2: unknown method,
missing data), which would fail the same way again.
"""
from __future__ import annotations

import fnmatch
import logging
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..engine.io import read_json, write_yaml
from ..engine.lock import RunLock
from ..files import make_folder
from .index import SweepIndex, config_path, log_path
from .progress import SweepProgress
from .spec import RunJob, SweepSpec
from .worker import WORKER_DIED, Outcome, Task

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
SUMMARY_KEYS = ("base", "novel", "hm", "accuracy")


class Pool(Protocol):
    backend: str
    capacity: int

    def submit(self, task: Task) -> Future: ...

    def shutdown(self, interrupt: bool = False) -> None: ...


@dataclass
class SweepResult:
    root: Path
    total: int
    skipped: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def select(jobs: list[RunJob], patterns: list[str] | None) -> list[RunJob]:
    """Jobs whose name matches any glob in ``patterns`` (all jobs without patterns)."""
    if not patterns:
        return jobs
    return [j for j in jobs if any(fnmatch.fnmatch(j.name, p) for p in patterns)]


def _summary(metrics_file: Path) -> dict[str, Any]:
    metrics = read_json(metrics_file)
    return {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}


class Driver:
    def __init__(self, spec: SweepSpec, jobs: list[RunJob], root: Path, pool: Pool) -> None:
        self.jobs = {job.name: job for job in jobs}
        self.root = root
        self.pool = pool
        self.index = SweepIndex(root, spec, jobs, pool.backend)
        self.result = SweepResult(root, len(jobs))

    def run(self) -> SweepResult:
        todo = self._prepare()
        progress = SweepProgress(len(self.jobs), self.pool.backend)
        progress.advance(len(self.result.skipped))
        inflight: dict[Future, tuple[str, int]] = {}
        try:
            with progress:
                while todo or inflight:
                    while todo and len(inflight) < self.pool.capacity:
                        name, attempt = todo.pop(0)
                        inflight[self._submit(name, attempt)] = (name, attempt)
                    progress.show(self.index.counts())
                    finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for future in finished:
                        name, attempt = inflight.pop(future)
                        retry = self._record(name, attempt, future)
                        if retry:
                            todo.insert(0, (name, attempt + 1))
                        else:
                            progress.advance(1)
                    progress.show(self.index.counts())
        except BaseException:
            self.pool.shutdown(interrupt=True)
            for name, _ in inflight.values():
                self.index.update(name, status="interrupted")
            raise
        self.pool.shutdown()
        self.index.write()
        return self.result

    def _prepare(self) -> list[tuple[str, int]]:
        """Mark finished runs done (nothing is started for them); write each run's config file."""
        todo = []
        for name, job in self.jobs.items():
            metrics = self.root / name / "metrics.json"
            if metrics.is_file():
                self.result.skipped.append(name)
                self.index.entry(name).update(status="done", skipped=True, metrics=_summary(metrics))
                continue
            write_yaml(config_path(self.root, name), job.config)
            todo.append((name, 1))
        self.index.write()
        if self.result.skipped:
            log.info("%d of %d runs are finished already; %d to run", len(self.result.skipped), len(self.jobs), len(todo))
        return todo

    def _submit(self, name: str, attempt: int) -> Future:
        self.index.update(name, status="running", attempts=attempt, skipped=False)
        task = Task(name, str(config_path(self.root, name)), str(self.root / name), str(log_path(self.root, name)), attempt)
        return self.pool.submit(task)

    def _record(self, name: str, attempt: int, future: Future) -> bool:
        """Store the outcome of one attempt; True when the run should be tried again."""
        try:
            outcome: Outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - a worker that died (Ray node lost, ...)
            outcome = Outcome(name, WORKER_DIED, False, f"worker failed: {type(exc).__name__}: {exc}", 0.0)
        if outcome.finished:
            self.result.done.append(name)
            self.index.update(name, status="done", returncode=0, error=None, seconds=outcome.seconds,
                              metrics=_summary(self.root / name / "metrics.json"))
            log.info("done %s (%.1fs)", name, outcome.seconds)
            return False
        retry = outcome.retryable and attempt < MAX_ATTEMPTS
        self.index.update(name, status="pending" if retry else "failed", returncode=outcome.returncode,
                          error=outcome.error)
        logfile = log_path(self.root, name)
        if retry:
            log.warning("run %s failed (%s); retrying once; log: %s", name, outcome.error, logfile)
        else:
            self.result.failed[name] = {"error": outcome.error, "log": str(logfile), "returncode": outcome.returncode}
            log.error("run %s failed: %s; log: %s", name, outcome.error, logfile)
        return retry


def run_sweep(spec: SweepSpec, jobs: list[RunJob], root: str | Path, pool: Pool) -> SweepResult:
    """Run ``jobs`` (from ``spec.jobs()``) into ``root``; returns what was skipped, done, failed.

    One sweep at a time per folder (``.dvpt.lock``): a second would start the same runs and
    interleave ``sweep.json`` with the first's.
    """
    root = Path(root).resolve()
    make_folder(root)
    with RunLock(root, "sweep", kind="sweep folder"):
        return Driver(spec, jobs, root, pool).run()
