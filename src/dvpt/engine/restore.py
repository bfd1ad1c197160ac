"""Rebuild a trained method from its run folder (config + learnable checkpoint)."""
from __future__ import annotations

from pathlib import Path

from ..config.loader import from_dict
from ..config.schema import RunConfig
from ..errors import ConfigError, DvptError
from ..files import read_yaml
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


def restore_method(run_dir: str | Path, session: Session | None = None) -> tuple[Session, PromptMethod, dict]:
    """(session, method with its learned state, checkpoint metadata) of a finished run."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    session = session or Session(cfg)
    ckpt = run_dir / "checkpoint" / LEARNABLE
    if ckpt.is_file():
        meta = read_learnable_metadata(ckpt)
        method = session.build_method(meta["classnames"], session.load_dataset().templates)
        load_learnable(method, ckpt)
    else:
        splits = session.load_dataset()
        meta = {"classnames": splits.classnames}
        method = session.build_method(splits.classnames, splits.templates)
        if any(True for _ in method.parameters()):
            raise DvptError(f"{run_dir} has no checkpoint ({ckpt}); the run did not train")
    return session, method, meta
