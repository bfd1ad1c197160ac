"""FGVC-Aircraft 2013b (CoOp layout): 100 variants from the official list files, no json.

``variants.txt`` gives the label order; ``images_variant_<split>.txt`` lines are
``<image id> <variant name>`` and the image is ``images/<image id>.jpg``.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..base import DatasetSplits, Datum, repeated_names
from ..jsonfiles import fingerprint_bytes
from .coop_common import SPLITS, DOCS, dataset_dir, make_splits, missing_file_problems, register

DIRNAME = "fgvc_aircraft"
LAYOUT = f"{DIRNAME}/{{images/, images_variant_{{train,val,test}}.txt, variants.txt}}"


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: missing; it comes with the data/ folder of fgvc-aircraft-2013b ({LAYOUT}, see {DOCS})")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def collect(root: Path, problems: list[str], dry_run: bool) -> DatasetSplits | None:
    ddir = dataset_dir(root, DIRNAME)
    variants_file = ddir / "variants.txt"
    classnames = _lines(variants_file)
    repeated = repeated_names(classnames)
    if repeated:  # the image lists name classes by variant: a repeated line would merge two labels
        raise DataError(f"{variants_file}: variant(s) {', '.join(map(repr, list(repeated)[:5]))} listed more than "
                        "once; the image lists name a class by its variant, so each line must be unique; remove "
                        "the repeated line(s)")
    label_of = {name: i for i, name in enumerate(classnames)}
    lists: dict[str, list[Datum]] = {}
    blobs = [variants_file.read_bytes()]
    for split in SPLITS:
        list_file = ddir / f"images_variant_{split}.txt"
        items = []
        for n, line in enumerate(_lines(list_file), 1):
            image_id, _, variant = line.partition(" ")
            if variant not in label_of:
                raise DataError(f"{list_file}:{n}: variant {variant!r} is not in {variants_file}")
            items.append(Datum(str(ddir / "images" / f"{image_id}.jpg"), label_of[variant], variant))
        lists[split] = items
        blobs.append(list_file.read_bytes())
    problems += missing_file_problems(lists, ddir / "images_variant_*.txt")
    return make_splits("fgvc_aircraft", lists, classnames, ddir, fingerprint_bytes(*blobs))


register("fgvc_aircraft", collect, LAYOUT, num_classes=100, dirname=DIRNAME,
         description="FGVC-Aircraft variants (official train/val/test lists)")
