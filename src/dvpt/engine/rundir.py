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

CONFIG = "config.yaml"
METRICS = "metrics.json"


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handler: logging.Handler | None = None
        self._created = False

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def finished(self) -> bool:
        return self.metrics_path.is_file()

    def check_same_config(self, cfg: RunConfig) -> bool:
        """True when the folder already holds a run of exactly ``cfg``; refuses another config.

        Checked for finished runs too: a finished folder must never answer for another run.
        """
        existing = self.path / CONFIG
        if not existing.is_file():
            return False
        import yaml

        try:
            previous = yaml.safe_load(existing.read_text())
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            raise DvptError(f"{existing} is unreadable ({type(exc).__name__}); choose a new --output") from None
        if previous != to_dict(cfg):
            state = "finished run" if self.finished() else "run"
            raise DvptError(
                f"{self.path} holds a {state} with another config; choose a new --output, or delete it to start over"
            )
        return True

    def start(self, cfg: RunConfig) -> None:
        """Create the folder (or re-open it to resume), write config and versions, log to file."""
        config = to_dict(cfg)
        existing = self.path / CONFIG
        if not self.check_same_config(cfg):
            if self.path.exists() and any(self.path.iterdir()):
                raise DvptError(f"output folder {self.path} is not empty and holds no dvpt run; choose a new --output")
            self._created = not self.path.exists()  # a folder the user made is never deleted
            self.path.mkdir(parents=True, exist_ok=True)
            io.write_yaml(existing, config)
            io.write_json(self.path / "env.json", io.environment())
        self._handler = logging.FileHandler(self.path / "log.txt")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("dvpt").addHandler(self._handler)
        logging.getLogger("dvpt").setLevel(logging.INFO)

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        return io.write_json(self.metrics_path, metrics)

    def write_eval(self, name: str, record: dict[str, Any]) -> Path:
        return io.write_json(self.path / "eval" / f"{name}.json", record)

    def close(self, failed: bool = False) -> None:
        if self._handler is not None:
            logging.getLogger("dvpt").removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if failed and self._created and not self.checkpoint_dir.exists():
            shutil.rmtree(self.path, ignore_errors=True)  # nothing half-written is left behind
