#!/usr/bin/env python
"""End-to-end checks of every registered method on a CUDA GPU: train, evaluate, export, predict.

Why: the test suite runs on CPUs, so the CUDA-only code paths (bf16 and fp16 autocast, fp16
loss scaling, tensors moving between devices when a prompt trained on a GPU is used on a
CPU) are exercised here. For each method it trains the same base-to-novel run (a small
synthetic colour-folder task, the ``tiny-random`` backbone, fixed seed) on the CPU in fp32
(the reference) and on the GPU in fp32, bf16, fp16 and fp16-weights (the official pure fp16:
half weights, no autocast, no loss scaling), then loads the GPU-fp32 run's
exported prompt on both devices and compares their logits.

The task is learnable only in part with random weights (the class names mean nothing to a
random text tower), so the accuracies are reported, not judged; the numerics are. A check
fails (exit 1) when a metric is not finite, when a GPU run's last-epoch training loss is
further from the CPU fp32 run's than ``LOSS_TOLERANCE`` allows, or when the exported
prompt's logits differ by more than ``LOGIT_TOLERANCE`` between devices. Usage, from the repository root with dvpt importable:

    python benchmarks/gpu_checks.py [--methods coop,dvpt] [--output gpu_checks.json]

``--device cpu`` runs the same plan without a GPU (what the test suite does, on one method).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

COLOURS = {
    "red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
    "yellow": (230, 230, 20), "purple": (140, 30, 160), "cyan": (30, 210, 210),
}


def make_colour_folder(root: Path, per_class: int = 16, size: int = 32, seed: int = 0) -> Path:
    """``root/<colour>/<i>.png``: noisy squares with a darker patch, one colour per class."""
    from PIL import Image

    rng = random.Random(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = tuple(max(0, min(255, v + rng.randint(-35, 35))) for v in rgb)
            img = Image.new("RGB", (size, size), colour)
            x, y = rng.randint(0, size // 2), rng.randint(0, size // 2)
            img.paste(tuple(v // 2 for v in colour), (x, y, x + size // 4, y + size // 4))
            img.save(root / name / f"{i:03d}.png")
    return root


#: largest relative difference of the last epoch's training loss to the CPU fp32 run's. fp16
#: gets bf16's limit although it has more mantissa: its loss scaler starts at 2**16 and skips
#: the first steps while it backs off, so a short run takes fewer updates than the reference
#: fp16-weights updates fp16 parameters without a loss scaler or fp32 master copy, as the
#: official trainers do: rounding in every update, so it gets the same limit
LOSS_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 5e-2, "fp16-weights": 5e-2}
#: largest |logit| difference of one prompt on two devices: logits are 100 x a cosine, and
#: cuDNN runs fp32 convolutions (the patch embedding) in TF32 by default, ~1e-5 in the cosine
LOGIT_TOLERANCE = 1e-2


def train_one(method: str, device: str, precision: str, data: Path, out: Path, epochs: int) -> dict:
    import torch

    from dvpt.config import build_config
    from dvpt.engine.runner import run_training

    cfg = build_config(method=method, flags={
        "backbone": "tiny-random", "protocol": "base2novel", "device": device, "precision": precision, "seed": 1,
        "data": {"dataset": "folder", "root": str(data), "shots": 4},
        "optim": {"epochs": epochs, "batch_size": 8, "lr": 0.01},
    })
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    metrics = run_training(cfg, out)
    row = {"method": method, "device": device, "precision": precision, "seconds": round(time.perf_counter() - started, 2)}
    row |= {k: metrics.get(k) for k in ("base", "novel", "hm", "train_acc")}
    history = metrics.get("history") or []
    row["loss"] = history[-1]["loss"] if history else None  # zero-shot trains nothing
    if device.startswith("cuda"):
        row["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def prompt_logits_gap(run_dir: Path, work: Path, images: list[str], device: str) -> float:
    """Largest |logit| difference of one exported prompt loaded on ``device`` and on the CPU."""
    import dvpt
    from dvpt.inference.api import export_prompt

    path = export_prompt(run_dir, work / f"{run_dir.name}.dvpt")
    on_cpu = dvpt.load_prompt(path, device="cpu").logits(images)
    on_device = dvpt.load_prompt(path, device=device).logits(images)
    return float((on_cpu - on_device).abs().max())


def run(methods: list[str], device: str, precisions: list[str], epochs: int) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_colour_folder(work / "colours")
        images = sorted(str(p) for p in (data / "red").glob("*.png"))[:4] + sorted(str(p) for p in (data / "cyan").glob("*.png"))[:4]
        for method in methods:
            reference = train_one(method, "cpu", "fp32", data, work / f"{method}-cpu", epochs)
            rows.append(reference)
            for precision in precisions:
                row = train_one(method, device, precision, data, work / f"{method}-{precision}", epochs)
                row["hm_minus_cpu"] = round(row["hm"] - reference["hm"], 2) if row.get("hm") is not None else None
                if row["loss"] is not None and reference["loss"] is not None:
                    row["loss_rel_diff"] = abs(row["loss"] - reference["loss"]) / max(abs(reference["loss"]), 1e-8)
                if precision == "fp32":
                    row["prompt_logit_gap_vs_cpu"] = prompt_logits_gap(work / f"{method}-{precision}", work, images, device)
                rows.append(row)
        for row in rows:
            label = f"{row['method']} {row['device']} {row['precision']}"
            values = [row.get(k) for k in ("base", "novel", "hm")]
            if any(v is None or not math.isfinite(v) for v in values):
                failures.append(f"{label}: non-finite or missing metrics {values}")
            limit = LOSS_TOLERANCE[row["precision"]]
            if row.get("loss_rel_diff", 0.0) > limit:
                failures.append(f"{label}: final training loss {row['loss']:.5f} is {row['loss_rel_diff']:.1e} (relative) "
                                f"from the CPU fp32 run's (limit {limit:.0e})")
            if row.get("prompt_logit_gap_vs_cpu", 0.0) > LOGIT_TOLERANCE:
                failures.append(f"{label}: exported prompt logits differ from the CPU's by {row['prompt_logit_gap_vs_cpu']:.2e}")
    return rows, failures


def table(rows: list[dict]) -> str:
    lines = ["| method | device | precision | base | novel | HM | HM - CPU | loss rel. diff | prompt logit gap | s | peak MB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        delta = "" if r.get("hm_minus_cpu") is None else f"{r['hm_minus_cpu']:+.2f}"
        loss = "" if r.get("loss_rel_diff") is None else f"{r['loss_rel_diff']:.1e}"
        gap = "" if r.get("prompt_logit_gap_vs_cpu") is None else f"{r['prompt_logit_gap_vs_cpu']:.1e}"
        lines.append(
            f"| {r['method']} | {r['device']} | {r['precision']} | {r['base']:.2f} | {r['novel']:.2f} | {r['hm']:.2f} | "
            f"{delta} | {loss} | {gap} | {r['seconds']:.1f} | {r.get('peak_mb', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (the same plan without a GPU)")
    parser.add_argument("--precisions", default="fp32,bf16,fp16,fp16-weights", help="GPU precisions to train in")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    import torch

    from dvpt.methods import METHODS  # importing the package registers every method

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_checks.py: error: no CUDA device is visible; run it on a machine with an NVIDIA GPU, "
              "or pass --device cpu to run the same plan on the CPU", file=sys.stderr)
        return 2
    methods = [m for m in args.methods.split(",") if m] or METHODS.names()
    precisions = [p for p in args.precisions.split(",") if p]
    if args.device == "cpu":
        precisions = ["fp32"]
    rows, failures = run(methods, args.device, precisions, args.epochs)
    if not rows:
        failures.append("no method was run")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
