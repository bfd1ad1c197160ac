"""Where runs execute: a local pool of worker processes, or tasks on a Ray cluster.

Both hand back ``concurrent.futures.Future[Outcome]`` so one driver loop serves both;
``capacity`` is how many runs may be in flight at once.
"""
from __future__ import annotations

import logging
import os
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..errors import DvptError
from .worker import Outcome, Task, WorkerProcess, run_in_process

log = logging.getLogger(__name__)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LocalPool:
    """``workers`` runs at a time on this machine, in long-lived worker processes.

    Each worker gets cores // workers torch threads; with ``gpus`` (device ids), worker i
    sees only ``gpus[i % len(gpus)]``. A worker that dies is replaced for the next run.
    """

    backend = "local"

    def __init__(self, workers: int, gpus: list[str] | None = None) -> None:
        if workers < 1:
            raise DvptError(f"--workers must be at least 1, got {workers}")
        self.capacity = workers
        self.threads = max(1, available_cores() // workers)
        self.gpus = gpus or []
        self._idle: queue.Queue[int] = queue.Queue()
        self._workers: dict[int, WorkerProcess] = {}
        for slot in range(workers):
            self._idle.put(slot)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dvpt-sweep")

    def submit(self, task: Task) -> Future:
        return self._executor.submit(self._run, task)

    def _worker(self, slot: int) -> WorkerProcess:
        worker = self._workers.get(slot)
        if worker is None or not worker.alive():
            gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
            worker = self._workers[slot] = WorkerProcess(self.threads, gpu)
        return worker

    def _run(self, task: Task) -> Outcome:
        slot = self._idle.get()
        try:
            return self._worker(slot).run(task)
        finally:
            self._idle.put(slot)

    def shutdown(self, interrupt: bool = False) -> None:
        for worker in list(self._workers.values()):
            worker.stop(force=interrupt)
        self._executor.shutdown(wait=True, cancel_futures=interrupt)


class RayPool:
    """Runs as Ray tasks with the spec's ``num_cpus``/``num_gpus`` each.

    ``address``: ``auto`` (the cluster this machine belongs to), ``ray://host:port`` or
    ``host:port``, or ``local`` (start a private Ray on this machine with ``workers`` CPUs).
    The sweep folder must be on storage every node sees (the run folders are written there).
    """

    backend = "ray"

    def __init__(self, address: str, resources: dict[str, float], workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise DvptError('--ray needs Ray: pip install "dvpt[ray]" (or "ray[default]")') from None
        self.ray = ray
        self.resources = resources
        self._owned = not ray.is_initialized()
        if self._owned:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address == "local":
                kwargs["num_cpus"] = workers or available_cores()
                kwargs["num_gpus"] = 0 if not resources.get("num_gpus") else None
                kwargs = {k: v for k, v in kwargs.items() if v is not None}
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise DvptError(f"cannot reach a Ray cluster at {address!r}: {exc}; start one with `ray start --head`") from None
        self.capacity = workers or self._cluster_slots()
        self.threads = max(1, int(resources.get("num_cpus") or 1))
        self._task = ray.remote(run_in_process).options(
            num_cpus=resources.get("num_cpus", 1), num_gpus=resources.get("num_gpus", 0), max_retries=0,
        )
        self._refs: list[Any] = []

    def _cluster_slots(self) -> int:
        """How many runs fit on the cluster at once, from its CPUs and GPUs."""
        total = self.ray.cluster_resources()
        fits = []
        for key, ray_key in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
            need = self.resources.get(key) or 0
            if need:
                fits.append(int(total.get(ray_key, 0) // need))
        return max(1, min(fits) if fits else int(total.get("CPU", 1)))

    def submit(self, task: Task) -> Future:
        ref = self._task.remote(task, self.threads)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, interrupt: bool = False) -> None:
        if interrupt:
            for ref in self._refs:
                self.ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owned:
            self.ray.shutdown()
