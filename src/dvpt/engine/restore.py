"""Rebuild a trained method from its run folder (config + learnable checkpoint).

The one way back from a run folder to a method: ``dvpt eval`` and ``dvpt export`` (and so
every prompt file) use it. The trained class names and templates come from the checkpoint's
metadata, where training wrote them, so no dataset is read to rebuild the method.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config.loader import from_dict
from ..config.schema import RunConfig
from ..data.templates import dataset_templates
from ..errors import ConfigError, DvptError
from ..files import read_json, read_yaml
from ..methods.base import PromptMethod
from .checkpoint import LEARNABLE, load_learnable, read_learnable_metadata
from .rundir import CONFIG
from .session import Session


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config a run folder was trained with."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise DvptError(f"{run_dir} is not a dvpt run folder (no {CONFIG}); pass the --output of `dvpt train`")
    data = read_yaml(path, "run config") or {}
    if not isinstance(data, dict):
        raise DvptError(f"run config {path} holds a {type(data).__name__}, not a mapping; it is not a dvpt run folder")
    try:
        return from_dict(RunConfig, data)
    except ConfigError as exc:
        raise DvptError(f"{path} cannot be read as a run config: {exc}") from None


def trained_classes(run_dir: Path, cfg: RunConfig, ckpt_meta: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Trained class names and templates: from the checkpoint, else (a method with nothing to
    train) from the run's first evaluation and the dataset's templates."""
    classnames = ckpt_meta.get("classnames")
    if classnames is None:
        metrics = run_dir / "metrics.json"
        evaluations = (read_json(metrics, "metrics file") or {}).get("evaluations", []) if metrics.is_file() else []
        if not evaluations:
            raise DvptError(f"{run_dir} has neither a checkpoint nor a finished evaluation to take class names from")
        classnames = evaluations[0]["classes"]
    templates = ckpt_meta.get("templates") or list(dataset_templates(cfg.data.dataset))
    return list(classnames), list(templates)


def restore_method(run_dir: str | Path, session: Session | None = None) -> tuple[Session, PromptMethod, dict]:
    """(session, method with its learned state, checkpoint metadata) of a trained run.

    ``session`` lets a caller choose where the method lives (``dvpt export`` rebuilds on the
    CPU in fp32); by default it is the run's own.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    session = session or Session(cfg)
    ckpt = run_dir / "checkpoint" / LEARNABLE
    meta = read_learnable_metadata(ckpt) if ckpt.is_file() else {}
    classnames, templates = trained_classes(run_dir, cfg, meta)
    method = session.build_method(classnames, templates)
    if ckpt.is_file():
        load_learnable(method, ckpt)
    elif method.state_dict():
        raise DvptError(f"{run_dir} has no checkpoint ({ckpt}); train it (dvpt train -o {run_dir}) first")
    return session, method, meta
