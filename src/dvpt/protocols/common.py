"""Pieces every protocol shares: evaluation records and the run header."""
from __future__ import annotations

from typing import Any, Sequence

from ..data.base import Datum
from ..engine.evaluate import EvalResult
from ..engine.rundir import RunDir
from ..engine.session import Session
from ..methods.base import PromptMethod


def evaluate_and_record(
    session: Session,
    rundir: RunDir,
    method: PromptMethod,
    items: Sequence[Datum],
    *,
    name: str,
    dataset: str,
    subset: str,
    split: str = "test",
) -> dict[str, Any]:
    """Evaluate on ``items`` over the method's current classes; write ``eval/<name>.json``."""
    result: EvalResult = session.evaluate(method, items)
    record = {
        "name": name,
        "dataset": dataset,
        "split": split,
        "subset": subset,
        "classes": list(method.classnames),
        **result.summary(),
    }
    rundir.write_eval(name, record)
    return record


def run_header(session: Session) -> dict[str, Any]:
    cfg = session.cfg
    return {
        "method": cfg.method,
        "backbone": cfg.backbone,
        "dataset": cfg.data.dataset,
        "domain": cfg.data.options.get("domain"),
        "protocol": cfg.protocol,
        "shots": cfg.data.shots,
        "seed": cfg.seed,
    } | ({"shots_used": dict(used)} if (used := getattr(session, "shots_used", None)) is not None else {})
