"""``sweep.json``: the sweep's index, run name -> config, status, attempts, log, error.

Rewritten atomically on every status change (by one thread at a time), so a crash at any
moment leaves a readable index, and ``dvpt report`` can list the runs that have no metrics.
Statuses: pending, running, done, failed, interrupted. Paths are relative to the sweep
folder, so the folder can be moved or copied off a cluster as a whole.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..engine.io import write_json
from .spec import RunJob, SweepSpec

INDEX = "sweep.json"
STATUSES = ("pending", "running", "done", "failed", "interrupted")


def log_path(root: Path, name: str) -> Path:
    return root / "logs" / f"{name}.log"


def config_path(root: Path, name: str) -> Path:
    """The run's config layer as a file: ``dvpt train --config`` reads it (and so can a person)."""
    return root / "configs" / f"{name}.yaml"


class SweepIndex:
    def __init__(self, root: Path, spec: SweepSpec, jobs: list[RunJob], backend: str) -> None:
        self.root = root
        self.path = root / INDEX
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "name": spec.name,
            "spec": spec.source,
            "backend": backend,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "counts": {},
            "runs": {
                job.name: {
                    "config": job.config,
                    "status": "pending",
                    "attempts": 0,
                    "output": job.name,
                    "log": str(log_path(Path("."), job.name)),
                }
                for job in jobs
            },
        }

    def entry(self, name: str) -> dict[str, Any]:
        return self.data["runs"][name]

    def update(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.data["runs"][name].update(fields)
            self._write()

    def counts(self) -> Counter:
        return Counter(run["status"] for run in self.data["runs"].values())

    def write(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        counts = Counter(run["status"] for run in self.data["runs"].values())
        self.data["counts"] = {s: counts.get(s, 0) for s in STATUSES}
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(self.path, self.data)
