"""Cross-dataset transfer and domain generalisation: tune once on a source, evaluate the
same learned prompt on target datasets.

* ``crossdataset``: source on all its classes (CoOp: ImageNet, 16 shots), then each target
  dataset's own classes (``targets``; default: the other ten datasets, or the other emoji
  groups when the source is one).
* ``domaingen``: the same, with targets that share the source's label space (ImageNet-V2,
  -Sketch, -A, -R; for the emoji benchmark the ``line`` domain of the same group). Their
  logits are the source classifier's matching rows (``label_space_rows``, or matching class
  names), so a 200-class target is scored over its 200 classes with the source prompt.

* ``transfer``: both in one training run (what ``dvpt benchmark`` uses): a target of the
  source's label space (the source under other options, ``emoji-animals@line``, or
  ImageNet-V2 for ImageNet) is scored over the source classifier's matching rows (domain
  generalisation), any other over its own classes (cross-dataset). Its metrics keep
  the two apart.

A target is ``name``, ``name@domain`` (e.g. ``emoji-animals@line``) or either followed by
reader options, ``?key=value&key=value`` with YAML values
(``emoji-animals@color?difficulty=[0.8,1.0]``: harder renderings of the same classes).
"""
from __future__ import annotations

import re
from typing import Any

import torch
import yaml

from ..data import DATASETS
from ..data.base import DatasetSplits, match_by_name
from ..engine.evaluate import accuracy_from_logits, predict_logits
from ..engine.rundir import RunDir
from ..engine.session import Session
from ..errors import DataError
from ..methods.base import PromptMethod
from ..registry import PROTOCOLS
from .common import evaluate_and_record, run_header

STANDARD = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
            "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
IMAGENET_SHIFTS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]


def parse_target(target: str) -> tuple[str, dict[str, Any]]:
    """``name[@domain][?key=value&...]`` -> (name, reader options); values are YAML scalars or lists."""
    spec, _, query = target.partition("?")
    name, _, domain = spec.partition("@")
    options: dict[str, Any] = {"domain": domain} if domain else {}
    for pair in filter(None, query.split("&")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DataError(f"target {target!r}: reader option {pair!r} is not key=value; "
                            "write e.g. emoji-animals@color?difficulty=[0.8,1.0]")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise DataError(f"target {target!r}: cannot read the value of {key!r} ({value!r}); "
                            "write a number, a word or a list like [0.8,1.0]") from None
    return name, options


def eval_name(target: str) -> str:
    """A file-safe name for a target's evaluation record (``emoji-animals@line`` -> ``emoji-animals_line``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", target).strip("_")


def default_targets(source: str, protocol: str, options: dict[str, Any]) -> list[str]:
    if source.startswith("emoji-"):
        if protocol == "domaingen":
            return [f"{source}@line"]
        domain = options.get("domain")
        return [f"{n}@{domain}" if domain else n for n in DATASETS.names() if n.startswith("emoji-") and n != source]
    if protocol == "domaingen":
        return IMAGENET_SHIFTS
    return [d for d in STANDARD if d != source]


def source_rows(source: DatasetSplits, target: DatasetSplits) -> list[int] | None:
    """Rows of the source classifier that score the target's classes, when they share labels."""
    if target.label_space_rows is not None:
        return list(target.label_space_rows)
    rows = match_by_name(target.classnames, source.classnames)  # a repeated name keeps its own row
    return None if None in rows else [int(r) for r in rows if r is not None]


def evaluate_rows(session: Session, rundir: RunDir, method: PromptMethod, target: DatasetSplits, rows: list[int],
                  name: str) -> dict[str, Any]:
    """Score the target over the source classifier's ``rows`` only."""
    logits = predict_logits(method, target.test, session.store)
    logits = logits[:, torch.tensor(rows, dtype=torch.long)]
    labels = torch.tensor([d.label for d in target.test], dtype=torch.long)
    acc, per_class = accuracy_from_logits(logits, labels, len(rows))
    record = {"name": name, "dataset": target.name, "split": "test", "subset": "all",
              "classes": list(target.classnames), "source_rows": rows, "accuracy": acc,
              "num_images": len(target.test), "per_class_accuracy": per_class}
    rundir.write_eval(name, record)
    return record


def run_transfer(session: Session, rundir: RunDir, callbacks=(), protocol: str = "crossdataset") -> dict[str, Any]:
    cfg = session.cfg
    source = session.load_dataset()
    sampled = session.few_shot(source)
    targets = cfg.targets or default_targets(cfg.data.dataset, protocol, cfg.data.options)
    loaded = []
    for target in targets:  # load every target before training: a wrong root fails early
        name, options = parse_target(target)
        try:
            loaded.append((target, session.load_dataset(name, options={**cfg.data.options, **options})))
        except DataError as exc:
            raise DataError(f"target {target!r}: {exc}") from None
    method = session.build_method(sampled.classnames, source.templates)
    history = session.train(method, sampled.train, rundir.checkpoint_dir, callbacks)
    # accuracy on the training images themselves: how far the budget fits the source
    train_acc = session.evaluate(method, sampled.train).summary()["accuracy"]
    records = [evaluate_and_record(session, rundir, method, sampled.test, name="source", dataset=source.name,
                                   subset="all")]
    shifted = []
    for label, target in loaded:
        # transfer: a target within the source's label space (the source under other reader options,
        # ImageNet-V2 for ImageNet) is a shifted one, any other a cross-dataset one
        rows = source_rows(source, target) if protocol in ("domaingen", "transfer") else None
        if protocol == "transfer" and rows is not None:
            shifted.append(label)
        safe = eval_name(label)
        method.set_dataset(target.name)  # as the official evaluation, run with the target's name
        if rows is not None:
            method.set_classnames(source.classnames, source.templates)
            records.append(evaluate_rows(session, rundir, method, target, rows, safe))
        else:
            method.set_classnames(target.classnames, target.templates)
            records.append(evaluate_and_record(session, rundir, method, target.test, name=safe,
                                               dataset=target.name, subset="all"))
    target_acc = {label: r["accuracy"] for (label, _), r in zip(loaded, records[1:])}
    metrics = run_header(session) | {
        "source_accuracy": records[0]["accuracy"], "targets": target_acc, "target_mean": _mean(target_acc.values()),
        "train_acc": train_acc, "history": history, "evaluations": records,
    }
    if protocol == "transfer":  # the two tables of one run: other datasets, and the source under a shift
        cross = {k: v for k, v in target_acc.items() if k not in shifted}
        shift = {k: v for k, v in target_acc.items() if k in shifted}
        # a part without targets has no mean (None, not NaN: a run's metrics hold finite numbers)
        metrics |= {"crossdataset": cross, "crossdataset_mean": _mean(cross.values()) if cross else None,
                    "domaingen": shift, "domaingen_mean": _mean(shift.values()) if shift else None}
    return metrics


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


@PROTOCOLS.register("crossdataset")
def crossdataset(session: Session, rundir: RunDir, callbacks=()) -> dict[str, Any]:
    return run_transfer(session, rundir, callbacks, "crossdataset")


@PROTOCOLS.register("domaingen")
def domaingen(session: Session, rundir: RunDir, callbacks=()) -> dict[str, Any]:
    return run_transfer(session, rundir, callbacks, "domaingen")


@PROTOCOLS.register("transfer")
def transfer(session: Session, rundir: RunDir, callbacks=()) -> dict[str, Any]:
    return run_transfer(session, rundir, callbacks, "transfer")
