"""Oxford-IIIT Pets (CoOp layout): 37 breeds; a missing split is generated from annotations/."""
from __future__ import annotations

from . import annotation_splits
from .coop_common import ZhouDataset

ZhouDataset(
    name="oxford_pets", dirname="oxford_pets", image_subdir="images", split_file="split_zhou_OxfordPets.json",
    num_classes=37, description="Oxford-IIIT Pets breeds", extra_layout=("annotations/",),
    generate=annotation_splits.pets, split_recipe="80/20 train/val of annotations/trainval.txt, test.txt as test",
).register()
