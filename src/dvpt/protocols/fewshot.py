"""Few-shot: all classes, one tuning per shot count (1, 2, 4, 8, 16 in the literature).

Each shot count is an ordinary run folder ``shots_<k>/`` inside the protocol's folder (so it
resumes on its own and ``dvpt report`` reads it); the top-level metrics list them all.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..engine.io import read_json
from ..engine.rundir import RunDir
from ..engine.session import Session
from ..registry import PROTOCOLS
from .common import evaluate_and_record, run_header


@PROTOCOLS.register("fewshot")
def run(session: Session, rundir: RunDir, callbacks=()) -> dict[str, Any]:
    cfg = session.cfg
    shot_counts = [int(k) for k in (cfg.data.shots_list or [cfg.data.shots])]
    full = session.load_dataset()
    results: dict[str, float] = {}
    evaluations = []
    for shots in shot_counts:
        child = RunDir(rundir.path / f"shots_{shots}")
        if child.finished():
            metrics = read_json(child.metrics_path)
        else:
            child_cfg = replace(cfg, protocol="all", data=replace(cfg.data, shots=shots, shots_list=[]))
            child.start(child_cfg)
            try:
                sampled = session.few_shot(full, shots)
                method = session.build_method(sampled.classnames, full.templates)
                history = session.train(method, sampled.train, child.checkpoint_dir, callbacks)
                record = evaluate_and_record(session, child, method, sampled.test, name="all",
                                             dataset=full.name, subset="all")
                metrics = run_header(session) | {"protocol": "all", "shots": shots, "accuracy": record["accuracy"],
                                                 "history": history, "evaluations": [record]}
                child.write_metrics(metrics)
            finally:
                child.close()
        results[str(shots)] = metrics["accuracy"]
        evaluations.extend(metrics["evaluations"])
    header = {k: v for k, v in run_header(session).items() if k != "shots_used"}  # per shot count: in each child
    return header | {"shots": shot_counts, "accuracy_by_shots": results, "evaluations": evaluations}
