"""One run of a sweep, and the long-lived worker processes that run them.

A worker is a separate process (spawned, so nothing of the parent leaks in) that imports
torch once, sets its thread count (and GPU) once, and then runs one run after another:
starting a fresh interpreter per run would cost more than a small run itself, and a worker
keeps the frozen backbone loaded between runs. A crash still stays in its worker: the pool
sees the process die, reports that run and starts a new worker. Inside a Ray task
``run_in_process`` is called directly (Ray keeps its own worker processes).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: a user error (unknown method, missing data): retrying cannot help, as ``dvpt``'s exit code 2
USER_ERROR = 2
WORKER_DIED = -1


@dataclass
class Outcome:
    name: str
    returncode: int
    finished: bool
    error: str | None
    seconds: float

    @property
    def retryable(self) -> bool:
        return not self.finished and self.returncode != USER_ERROR


@dataclass(frozen=True)
class Task:
    """What a worker needs for one run: all paths absolute, all plain data (picklable)."""

    name: str
    config: str
    output: str
    log: str
    attempt: int = 1


def _attach_log(path: Path, attempt: int) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger(__name__).info("attempt %d", attempt)
    return handler


def run_in_process(task: Task, threads: int | None = None) -> Outcome:
    """``dvpt train --config task.config -o task.output`` in this process; log to ``task.log``."""
    from ..config.loader import build_config
    from ..engine.runner import run_training
    from ..errors import DvptError

    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.time()
    handler = _attach_log(Path(task.log), task.attempt)
    returncode, error = 0, None
    try:
        run_training(build_config(files=[task.config]), task.output)
    except DvptError as exc:
        returncode, error = USER_ERROR, str(exc)
        logging.getLogger(__name__).error("%s", exc)
    except Exception as exc:  # noqa: BLE001 - a bug in a run must not stop the sweep; it is logged
        returncode, error = 1, f"{type(exc).__name__}: {exc}"
        logging.getLogger(__name__).error("run failed:\n%s", traceback.format_exc())
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    finished = returncode == 0 and (Path(task.output) / "metrics.json").is_file()
    if returncode == 0 and not finished:
        returncode, error = 1, "the run ended without writing metrics.json"
    return Outcome(task.name, returncode, finished, error, round(time.time() - started, 3))


def _serve(conn: Connection, threads: int, gpu: str | None) -> None:
    """A worker's life: set threads/GPU before torch is imported, then run tasks until told."""
    os.environ.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "DVPT_NO_PROGRESS": "1"})
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    while True:
        try:
            task = conn.recv()
        except (EOFError, KeyboardInterrupt):  # the sweep went away
            return
        if task is None:
            return
        conn.send(run_in_process(task, threads))


class WorkerProcess:
    """One long-lived worker; ``run`` blocks until the run ends or the process dies."""

    def __init__(self, threads: int, gpu: str | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, threads, gpu), daemon=True, name="dvpt-sweep-worker")
        self.process.start()
        child.close()

    def alive(self) -> bool:
        return self.process.is_alive()

    def run(self, task: Task) -> Outcome:
        started = time.time()
        try:
            self._conn.send(task)
            while not self._conn.poll(0.5):
                if not self.process.is_alive():
                    return self._died(task, started)
            return self._conn.recv()
        except (EOFError, OSError):  # the pipe broke: the worker is gone
            return self._died(task, started)

    def _died(self, task: Task, started: float) -> Outcome:
        self.process.join(timeout=1)
        error = f"worker process died (exit code {self.process.exitcode}); see {task.log}"
        _append(Path(task.log), error)
        return Outcome(task.name, WORKER_DIED, False, error, round(time.time() - started, 3))

    def stop(self, force: bool = False) -> None:
        if force:
            self.process.terminate()
        else:
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout=5 if not force else 2)
        if self.process.is_alive():
            self.process.kill()


def _append(path: Path, line: str) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(line + "\n")
