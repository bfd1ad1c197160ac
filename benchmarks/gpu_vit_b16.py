#!/usr/bin/env python
"""ViT-B/16 prompt-tuning speed and memory on one CUDA GPU (random weights), bf16 and fp32.

For each precision it measures, each configuration in a fresh interpreter:
  * seconds per training iteration, batch 32 of 224x224 images through the image tower
    (the naive path), from 32 cached features (the cached path), and as the reference
    trainer does it (image tower + prompts padded to 77 tokens), CoOp with 16 context
    tokens, at 10, 100 and 1000 classes;
  * the text tower's forward + backward alone at 10, 100 and 1000 classes;
and the peak ``torch.cuda.max_memory_allocated`` (weights included). About 3 minutes on a
recent GPU. Usage, from the repository root with dvpt installed:

    python benchmarks/gpu_vit_b16.py [--classes 10,100,1000] [--repeats 5] [--output gpu.json]
"""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="10,100,1000", help="comma-separated class counts")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration (median)")
    parser.add_argument("--precisions", default="bf16,fp32", help="comma-separated: bf16, fp32, fp16")
    parser.add_argument("--output", help="also write the results as JSON here")
    return parser.parse_args(argv)


def cases(classes: list[int], precisions: list[str], repeats: int) -> list:
    from dvpt.experiments.bench import Case

    out = []
    for precision in precisions:
        common = dict(backbone="vit-b16-random", n_ctx=16, device="cuda", precision=precision, repeats=repeats, threads=4)
        out += [Case("iteration", classes=c, path=path, **common) for c in classes for path in ("naive", "cached")]
        # the reference trainer emulated (77-token prompts, no shared prefix), side by side
        out += [Case("iteration", classes=c, path="naive", reference_text=True, **common) for c in classes]
        out += [Case("text", classes=c, **common) for c in classes]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_vit_b16.py: error: no CUDA device is visible (torch.cuda.is_available() is False); "
              "run it on a machine with an NVIDIA GPU and a CUDA build of torch, or use "
              "`dvpt bench --reference-shapes` for the CPU figures", file=sys.stderr)
        return 2
    from dvpt.experiments import bench
    from dvpt.engine.io import write_json

    precisions = [p for p in args.precisions.split(",") if p]
    if "bf16" in precisions and not torch.cuda.is_bf16_supported():
        print("note: this GPU has no bf16; measuring fp16 (with loss scaling in training) instead", file=sys.stderr)
        precisions = ["fp16" if p == "bf16" else p for p in precisions]
    classes = [int(c) for c in args.classes.split(",") if c]
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}", file=sys.stderr)
    results = []
    for case in cases(classes, precisions, args.repeats):
        # a fresh interpreter per configuration: CUDA must not be forked, and peaks stay apart
        result = bench._measure_subprocess(case, timeout=600)
        results.append(result)
        if args.output:  # after every case, so a run cut short keeps what it measured
            write_json(args.output, results)
        status = result.get("error") or f"{result['seconds'] * 1000:.1f} ms, peak {result['peak_mb']:.0f} MB"
        print(f"  {case.precision} {bench.describe(result)} C={case.classes}: {status}", file=sys.stderr)
    for precision in precisions:
        print(f"\n### {precision}\n")
        mine = [r for r in results if r["precision"] == precision]
        print(bench.table(mine))
        print("\n".join(["", *bench.reference_ratios(mine)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
