"""A run folder: resolved config, package versions, log, checkpoint, metrics.

Every number a user sees comes from one of these, so any table can be rebuilt from the
folders alone.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ..config.loader import to_dict
from ..config.schema import RunConfig
from ..errors import DvptError
from . import io
from .lock import LOCK, RunLock

CONFIG = "config.yaml"
METRICS = "metrics.json"


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handler: logging.Handler | None = None
        self._created = False
        self._lock: RunLock | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def check_output(self) -> None:
        """Refuse an ``--output`` that is a file or lies inside one, before any work is done."""
        if self.path.exists() and not self.path.is_dir():
            raise DvptError(f"--output {self.path} is a file, not a run folder; choose a folder name")
        for parent in self.path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise DvptError(f"--output {self.path} lies inside the file {parent}; choose a folder name")
                break

    def finished(self) -> bool:
        return self.metrics_path.is_file()

    def check_same_config(self, cfg: RunConfig) -> bool:
        """True when the folder already holds a run of exactly ``cfg``; refuses another config.

        Checked for finished runs too: a finished folder must never answer for another run.
        """
        existing = self.path / CONFIG
        if not existing.is_file():
            return False
        previous = io.read_yaml(existing, "run config")
        if previous != to_dict(cfg):
            state = "finished run" if self.finished() else "run"
            raise DvptError(
                f"{self.path} holds a {state} with another config; choose a new --output, or delete it to start over"
            )
        return True

    def start(self, cfg: RunConfig) -> None:
        """Create the folder (or re-open it to resume) under its lock, write config and versions, log to file.

        The lock (``.dvpt.lock``) is taken before anything is read or written, so a second
        process on the same folder is refused instead of interleaving with this one.
        """
        self.check_output()
        config = to_dict(cfg)
        existing = self.path / CONFIG
        created = not self.path.exists()  # a folder the user made is never deleted
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock(self.path, "train")
        self._lock.acquire()
        try:
            if not self.check_same_config(cfg):
                if any(p.name != LOCK for p in self.path.iterdir()):
                    raise DvptError(f"output folder {self.path} is not empty and holds no dvpt run; choose a new --output")
                self._created = created
                io.write_yaml(existing, config)
                io.write_json(self.path / "env.json", io.environment())
            self._remove_stale_temporaries()
        except BaseException:
            self._lock.release()
            if created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        self._handler = logging.FileHandler(self.path / "log.txt")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("dvpt").addHandler(self._handler)
        logging.getLogger("dvpt").setLevel(logging.INFO)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a writer that was killed mid-write (``.NAME.XXXX.tmp``); safe to
        remove under the lock, since no other process writes here."""
        for folder in (self.path, self.checkpoint_dir, self.path / "eval"):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        return io.write_json(self.metrics_path, metrics)

    def write_eval(self, name: str, record: dict[str, Any]) -> Path:
        return io.write_json(self.path / "eval" / f"{name}.json", record)

    def close(self, failed: bool = False) -> None:
        if self._handler is not None:
            logging.getLogger("dvpt").removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if failed and self._created and not self.checkpoint_dir.exists():
            shutil.rmtree(self.path, ignore_errors=True)  # nothing half-written is left behind
