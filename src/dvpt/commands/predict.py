"""``dvpt predict --prompt NAME.dvpt IMAGE_OR_DIR...``: classify images with a tuned prompt.

Class names default to the ones the prompt was tuned on; ``--classes`` / ``--classes-file``
give any others (names never seen in training are what a generalisable prompt is for).
Folders are searched recursively for images. An image that cannot be read is reported on
stderr with its path and skipped; the rest are still predicted. Results go to stdout as a
table, JSON (full-precision logits and probabilities) or CSV.
"""
from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..errors import DataError, DvptError
from ..files import json_text

FORMATS = ("table", "json", "csv")


@dataclass
class Prediction:
    path: str
    logits: torch.Tensor  # [C]

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.softmax(-1)


# ---- inputs -------------------------------------------------------------------------------
def discover(inputs: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files from files and (recursively) folders, in a stable order; missing paths reported."""
    from ..data.datasets.coop_common import IMAGE_EXTENSIONS

    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found.append(path)
        else:
            missing.append((raw, "no such file or folder"))
    return found, missing


def read_classes(args: argparse.Namespace) -> list[str] | None:
    """``--classes a,b,c`` or ``--classes-file F`` (one per line, ``#`` comments); None = the trained ones."""
    if args.classes and args.classes_file:
        raise DvptError("give --classes or --classes-file, not both")
    if args.classes:
        return [c.strip() for c in args.classes.split(",") if c.strip()]
    if args.classes_file:
        path = Path(args.classes_file)
        if not path.is_file():
            raise DvptError(f"--classes-file {path} not found; give a text file with one class name per line")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [line for line in lines if line and not line.startswith("#")]
        if not names:
            raise DvptError(f"--classes-file {path} holds no class names (one per line)")
        return names
    return None


def chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def warn_skipped(path: str, reason: str) -> None:
    print(f"dvpt predict: skipped {path}: {reason}", file=sys.stderr)


def predict_paths(prompt, paths: Sequence[Path], classnames: list[str], batch_size: int,
                  show_progress: bool) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Batched prediction; unreadable images are reported and skipped, never fatal."""
    from ..engine.progress import progress

    results: list[Prediction] = []
    skipped: list[tuple[str, str]] = []
    batches = chunks(paths, batch_size)
    if show_progress:
        batches = progress(batches, desc="predict", total=-(-len(paths) // batch_size))
    for batch in batches:
        tensors, kept = [], []
        for path in batch:
            try:
                tensors.append(prompt.transform(path))
                kept.append(str(path))
            except DataError as exc:
                warn_skipped(str(path), str(exc))
                skipped.append((str(path), str(exc)))
        if tensors:
            logits = prompt.logits(torch.stack(tensors), classnames)
            results += [Prediction(p, row) for p, row in zip(kept, logits)]
    return results, skipped


# ---- outputs ------------------------------------------------------------------------------
def top_k(pred: Prediction, classnames: Sequence[str], k: int) -> list[tuple[int, str, float, float]]:
    """(label, name, probability, logit) of the ``k`` best classes; the label tells apart classes
    that share a name (a dataset's own list may repeat one, as ImageNet's "crane")."""
    probs = pred.probabilities
    order = torch.argsort(probs, descending=True, stable=True)[:k]
    return [(i, classnames[i], float(probs[i]), float(pred.logits[i])) for i in order.tolist()]


def prediction_document(prompt, names: list[str], results: list[Prediction], skipped: list[tuple[str, str]], k: int,
                        source: str) -> dict:
    """The JSON document of ``--format json``; the app returns the same one, so both agree exactly."""
    return {
        "prompt": source, "method": prompt.meta.method, "backbone": prompt.meta.backbone, "classes": names,
        "images": [
            {"path": r.path,
             "top": [{"class": c, "index": i, "probability": p, "logit": l} for i, c, p, l in top_k(r, names, k)],
             "logits": [float(x) for x in r.logits], "probabilities": [float(x) for x in r.probabilities]}
            for r in results
        ],
        "skipped": [{"path": p, "error": e} for p, e in skipped],
    }


def write_json(out, prompt, names: list[str], results: list[Prediction], skipped: list[tuple[str, str]], k: int,
               source: str) -> None:
    """Full precision: float32 values written as Python floats round-trip exactly."""
    document = prediction_document(prompt, names, results, skipped, k, source)
    out.write(json_text(document, "the prediction output", indent=1) + "\n")  # NaN is junk, never printed


def write_csv(out, names: list[str], results: list[Prediction], k: int) -> None:
    from ..data.base import labelled_names

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "rank", "class", "probability", "logit"])
    shown = labelled_names(names)
    for r in results:
        for rank, (i, _, prob, logit) in enumerate(top_k(r, names, k), 1):
            writer.writerow([r.path, rank, shown[i], repr(prob), repr(logit)])


def write_table(out, names: list[str], results: list[Prediction], k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..data.base import labelled_names

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("image", overflow="fold")
    for rank in range(1, k + 1):
        table.add_column(f"top-{rank}" if k > 1 else "prediction")
    shown = labelled_names(names)
    for r in results:
        table.add_row(r.path, *[f"{shown[i]} {prob * 100:.1f}%" for i, _, prob, _ in top_k(r, names, k)])
    Console(file=out, width=max(100, 24 * (k + 2)), highlight=False).print(table)


def run(args: argparse.Namespace) -> int:
    from ..inference.api import load_prompt

    if args.top_k < 1:
        raise DvptError(f"--top-k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        raise DvptError(f"--batch-size must be at least 1, got {args.batch_size}")
    classes = read_classes(args)
    paths, missing = discover(args.images)
    if not paths:
        absent = f"; not found: {', '.join(p for p, _ in missing)}" if missing else ""
        raise DvptError(f"no images found in {', '.join(args.images)} (image files, and folders searched "
                        f"recursively){absent}")
    for path, reason in missing:
        warn_skipped(path, reason)
    prompt = load_prompt(args.prompt, backbone=args.backbone, device=args.device,
                         check_backbone=not args.allow_backbone_mismatch)
    prompt.batch_size = args.batch_size  # images per forward pass, as --batch-size says
    names = prompt.use_classes(classes)
    show = any(Path(p).is_dir() for p in args.images)
    results, skipped = predict_paths(prompt, paths, names, args.batch_size, show)
    if not results:
        raise DvptError(f"none of the {len(paths)} image(s) could be read (see the messages above)")
    k = min(args.top_k, len(names))
    if args.format == "json":
        write_json(sys.stdout, prompt, names, results, missing + skipped, k, args.prompt)
    elif args.format == "csv":
        write_csv(sys.stdout, names, results, k)
    else:
        write_table(sys.stdout, names, results, k)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="classify images with an exported prompt (.dvpt)", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders (recursive)")
    parser.add_argument("--prompt", "-p", required=True, metavar="FILE.dvpt", help="written by `dvpt export`")
    parser.add_argument("--classes", help="comma-separated class names (default: the classes it was tuned on)")
    parser.add_argument("--classes-file", metavar="FILE", help="class names, one per line")
    parser.add_argument("--top-k", type=int, default=3, help="classes shown per image (default 3)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="stdout format (default table)")
    parser.add_argument("--backbone", help="load this backbone instead of the one named in the file")
    parser.add_argument("--allow-backbone-mismatch", action="store_true",
                        help="use the prompt even if the backbone's identity differs from the one it was tuned on")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.set_defaults(func=run)
