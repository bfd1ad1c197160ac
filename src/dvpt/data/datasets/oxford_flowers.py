"""Oxford Flowers 102 (CoOp layout): a missing split is generated 50/20/30 per class from
imagelabels.mat and cat_to_name.json."""
from __future__ import annotations

from . import annotation_splits
from .coop_common import ZhouDataset

ZhouDataset(
    name="oxford_flowers", dirname="oxford_flowers", image_subdir="jpg", split_file="split_zhou_OxfordFlowers.json",
    num_classes=102, description="Oxford Flowers 102 species", extra_layout=("imagelabels.mat", "cat_to_name.json"),
    generate=annotation_splits.flowers, split_recipe="a 50/20/30 per-class split of imagelabels.mat",
).register()
