"""``dvpt bench``: training speed and peak memory, naive image path against the frozen-feature
cache, and the text tower's cost at 10, 100 and 1000 classes (see docs/performance.md)."""
from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ..experiments import bench
    from ..engine.device import resolve_device, resolve_precision
    from ..engine.io import write_json

    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    device = str(device)
    if args.fidelity:
        cases = bench.fidelity_plan(device=device, threads=args.threads)
    else:
        cases = bench.plan(quick=args.quick, reference_shapes=args.reference_shapes, device=device,
                           threads=args.threads, precision=precision, backbones=args.backbone or (),
                           classes=args.classes or ())
    if not cases:
        print(f"dvpt bench: no case left at --classes {' '.join(map(str, args.classes))}; use class counts the "
              "plan measures (10 100 1000; 10 100 400 1000 with --reference-shapes)", file=sys.stderr)
        return 2
    if not args.backbone and not args.reference_shapes and not args.fidelity and not bench.micro_available():
        print("note: micro's weights are not built yet (dvpt pretrain-micro); measuring tiny-random instead",
              file=sys.stderr)
    print(f"{len(cases)} configurations, each in a fresh process ({device}, {cases[0].precision}, "
          f"{args.threads} threads)", file=sys.stderr)

    def show(result: dict) -> None:
        status = result.get("error") or f"{result['seconds']:.3f} s, peak {result['peak_mb']:.0f} MB"
        print(f"  {result['backbone']} {bench.describe(result)} C={result['classes']}: {status}", file=sys.stderr)

    results = bench.run_plan(cases, on_result=show)
    if args.output:
        write_json(args.output, results)
    print(bench.table(results))
    for line in bench.reference_ratios(results) + bench.backbone_ratios(results):
        print(line)
    if args.fidelity:
        print(bench.fidelity_cost(results) or "fidelity cost: n/a (a measurement failed)")
    elif not args.reference_shapes:
        split = bench.where_the_epoch_goes(results)
        if split:
            print(split)
        ratio = bench.speedup(results)
        print(f"cached speedup: {ratio:.1f}x" if ratio else "cached speedup: n/a")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="measure training speed and memory (naive vs cached)", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the small backbone only (under a minute)")
    parser.add_argument("--reference-shapes", action="store_true",
                        help="s/iteration and peak memory at the reference trainer's shapes: ViT-B/16 random "
                             "weights, batch 32 of 224x224, 16 context tokens, fp32; 10/100/400/1000 classes")
    parser.add_argument("--fidelity", action="store_true",
                        help="what the paper specs' fidelity mode costs: a ViT-B/16 CoOp epoch cached in fp32 "
                             "against the same epoch without cache (fp16 weights on CUDA), side by side, with the ratio")
    parser.add_argument("--backbone", action="append", metavar="NAME",
                        help="measure on this backbone instead of the plan's own (repeat it: every case runs on "
                             "each, side by side, with the time ratios to the first), e.g. --reference-shapes "
                             "--backbone vit-b16-random --backbone openclip:ViT-B-16")
    parser.add_argument("--classes", type=int, nargs="+", metavar="C",
                        help="only the text and iteration cases at these class counts (e.g. --classes 10 100)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per measurement (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda | auto")
    parser.add_argument("--precision", default="fp32",
                        help="fp32 (default) | bf16 | fp16 (CUDA only) | fp16-weights | auto; --reference-shapes is always fp32")
    parser.add_argument("--output", "-o", help="also write the results as JSON here")
    parser.set_defaults(func=run)
