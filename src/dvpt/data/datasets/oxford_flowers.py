"""Oxford Flowers 102 (CoOp layout): the split file is required (labels come from .mat files)."""
from __future__ import annotations

from .coop_common import ZhouDataset

ZhouDataset(
    name="oxford_flowers", dirname="oxford_flowers", image_subdir="jpg", split_file="split_zhou_OxfordFlowers.json",
    num_classes=102, description="Oxford Flowers 102 species", extra_layout=("imagelabels.mat", "cat_to_name.json"),
).register()
