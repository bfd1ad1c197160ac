#!/usr/bin/env python
"""What the paper specs' fidelity mode costs on a CUDA GPU: `dvpt bench --fidelity` per class count.

A ViT-B/16 CoOp epoch (random weights, 16 shots of 224x224 PNGs per class, batch 32) cached
in fp32 (the everyday default) beside the same epoch without cache with fp16 weights (load, crop, flip
and encode every image at every step, as the official trainers do), each in a fresh
interpreter, with the ratio per class count. Usage, from the repository root:

    python benchmarks/gpu_fidelity.py [--classes 10,100] [--output fidelity.json]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="10,100", help="comma-separated class counts")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per configuration (median)")
    parser.add_argument("--threads", type=int, default=8, help="CPU threads (image decoding) per configuration")
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_fidelity.py: error: no CUDA device is visible; on a CPU use `dvpt bench --fidelity`", file=sys.stderr)
        return 2
    from dvpt.engine.io import write_json
    from dvpt.experiments import bench

    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dvpt-fidelity-") as tmp:
        for classes in (int(c) for c in args.classes.split(",") if c):
            images = str(bench.write_images(Path(tmp) / f"c{classes}", classes, 16, 224))
            mine = [bench._measure_subprocess(case, timeout=600)  # CUDA is never forked
                    for case in bench.fidelity_plan("cuda", args.threads, images, classes, args.repeats)]
            results += mine
            print(bench.fidelity_cost(mine) or f"{classes} classes: a measurement failed", file=sys.stderr)
            if args.output:
                write_json(args.output, results)
    print(bench.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
