"""All classes: tune and evaluate on every class of the dataset (the few-shot setting)."""
from __future__ import annotations

from typing import Any

from ..engine.rundir import RunDir
from ..engine.session import Session
from ..registry import PROTOCOLS
from .common import evaluate_and_record, run_header


@PROTOCOLS.register("all")
def run(session: Session, rundir: RunDir, callbacks=()) -> dict[str, Any]:
    full = session.load_dataset()
    sampled = session.few_shot(full)
    method = session.build_method(sampled.classnames, full.templates)
    history = session.train(method, sampled.train, rundir.checkpoint_dir, callbacks)
    # accuracy on the training images themselves: how far the budget fits the few shots
    train_acc = session.evaluate(method, sampled.train).summary()["accuracy"]
    record = evaluate_and_record(session, rundir, method, sampled.test, name="all", dataset=full.name, subset="all")
    return run_header(session) | {"accuracy": record["accuracy"], "train_acc": train_acc, "history": history,
                                  "evaluations": [record]}
