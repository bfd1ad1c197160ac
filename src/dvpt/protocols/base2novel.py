"""Base-to-novel: tune on the base half of the classes, evaluate base and novel separately.

As in CoCoOp and its successors: few-shot sample all classes, keep the first half of the
sorted labels (base) for tuning; each half is its own classification problem at test time.
Reports B, N and HM = 2BN/(B+N).
"""
from __future__ import annotations

from typing import Any

from ..data.sampling import subsample_classes
from ..engine.evaluate import harmonic_mean
from ..engine.rundir import RunDir
from ..engine.session import Session
from ..registry import PROTOCOLS
from .common import evaluate_and_record, run_header


@PROTOCOLS.register("base2novel")
def run(session: Session, rundir: RunDir, callbacks=()) -> dict[str, Any]:
    full = session.load_dataset()
    sampled = session.few_shot(full)
    base = subsample_classes(sampled, "base")
    novel = subsample_classes(sampled, "novel")
    method = session.build_method(base.classnames, full.templates)
    history = session.train(method, base.train, rundir.checkpoint_dir, callbacks)
    name = full.name
    # accuracy on the training images themselves: shows how far the budget fits the base classes
    train_acc = session.evaluate(method, base.train).summary()["accuracy"]
    records = [evaluate_and_record(session, rundir, method, base.test, name="base", dataset=name, subset="base")]
    method.set_classnames(novel.classnames, full.templates)
    records.append(evaluate_and_record(session, rundir, method, novel.test, name="novel", dataset=name, subset="novel"))
    b, n = records[0]["accuracy"], records[1]["accuracy"]
    return run_header(session) | {
        "base": b, "novel": n, "hm": harmonic_mean(b, n), "train_acc": train_acc, "history": history, "evaluations": records,
    }
