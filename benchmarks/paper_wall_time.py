"""Estimated GPU wall time of the four paper sweeps, from measured per-iteration figures.

An estimate, not a measurement: no paper sweep has been run end to end. For every run of a
spec it counts the training steps the run's resolved recipe takes (few-shot training set =
classes x shots, the base half on base-to-novel; Dassl's loader drops the last partial
batch when the set holds at least one batch; zero-shot trains nothing) and multiplies them by
the fidelity-mode step measured on one H200 (docs/gpu/fidelity_h200.json, `dvpt bench
--fidelity`'s cases: a ViT-B/16 CoOp step of batch 32 without cache, fp16, PNGs decoded,
cropped and flipped at every step; docs/performance.md). The range below is [fastest,
slowest] measured step x steps. Not included: evaluation, CoCoOp's, MaPLe's and PromptSRC's
heavier steps (per-image text pass; gradients through the image tower), and the fp32 image
forward of ProGrad's teacher.

    python benchmarks/paper_wall_time.py [--figures docs/gpu/fidelity_h200.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dvpt.config.loader import deep_merge, method_preset
from dvpt.data import DATASETS
from dvpt.sweep import load_spec

SPECS = ("paper_base2novel", "paper_crossdataset", "paper_domaingen", "paper_fewshot")
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "gpu" / "fidelity_h200.json"


def training_steps(config: dict) -> int:
    """Optimiser steps of one run with this (preset-merged) config."""
    if config["method"] == "zeroshot":
        return 0
    data, optim = config["data"], config["optim"]
    classes = DATASETS.get(data["dataset"]).num_classes
    if config["protocol"] == "base2novel":
        classes = math.ceil(classes / 2)
    images = classes * data["shots"]
    batch = optim["batch_size"]
    per_epoch = images // batch if images >= batch else 1
    return per_epoch * optim["epochs"]


def spec_steps(name: str) -> tuple[int, int]:
    """(runs, total training steps) of a shipped spec."""
    jobs = load_spec(name).jobs(["data.root=/data"])
    return len(jobs), sum(training_steps(deep_merge(method_preset(j.method), j.config)) for j in jobs)


def fidelity_step_range(path: Path) -> tuple[float, float]:
    """(fastest, slowest) seconds per fidelity-mode training step measured in ``path``."""
    rows = json.loads(path.read_text())
    seconds = [r["seconds"] / r["steps"] for r in rows
               if r.get("kind") == "epoch" and r.get("fidelity") and "error" not in r]
    if not seconds:
        raise SystemExit(f"{path}: no fidelity epochs measured; run benchmarks/gpu_fidelity.py first")
    return min(seconds), max(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=FIGURES, help="benchmarks/gpu_fidelity.py output (JSON)")
    args = parser.parse_args(argv)
    low, high = fidelity_step_range(args.figures)
    print(f"ESTIMATE from {args.figures.name}: {low * 1000:.0f}-{high * 1000:.0f} ms per fidelity-mode ViT-B/16 "
          "training step (one H200), training steps only, one run at a time")
    print("| spec | runs | training steps | estimated training time, one H200 |")
    print("|---|---:|---:|---|")
    for name in SPECS:
        runs, steps = spec_steps(name)
        print(f"| `{name}` | {runs} | {steps:,} | {steps * low / 3600:.1f}-{steps * high / 3600:.1f} h |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
