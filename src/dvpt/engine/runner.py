"""One training run from a resolved config into a run folder (what ``dvpt train`` does)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config.schema import RunConfig
from ..errors import DvptError
from ..registry import PROTOCOLS
from .io import read_json
from .rundir import RunDir
from .session import Session

log = logging.getLogger(__name__)


def default_output(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.method}-{cfg.data.dataset}-{cfg.protocol}-seed{cfg.seed}-{stamp}"


def run_training(
    cfg: RunConfig,
    output: str | Path | None = None,
    callbacks: Sequence[Callable[[int], None]] = (),
    session: Session | None = None,
) -> dict[str, Any]:
    """Run ``cfg.protocol`` and return its metrics (also in ``<output>/metrics.json``).

    Everything that can fail on user input (method, backbone, dataset) is resolved before
    the folder is created; a run that fails before its first checkpoint leaves nothing.
    A finished folder is not re-run: its metrics are returned.
    """
    protocol = PROTOCOLS.get(cfg.protocol)
    rundir = RunDir(output or default_output(cfg))
    rundir.check_output()
    if rundir.finished() and rundir.check_same_config(cfg):
        log.info("%s is finished; delete it to run again", rundir.path)
        return read_json(rundir.metrics_path)
    session = session or Session(cfg)
    rundir.start(cfg)
    failed = True
    try:
        started = time.time()
        metrics = protocol(session, rundir, callbacks)
        metrics["seconds"] = round(time.time() - started, 3)
        metrics["output"] = str(rundir.path)
        rundir.write_metrics(metrics)
        failed = False
        return metrics
    except DvptError:
        raise
    finally:
        rundir.close(failed=failed)
