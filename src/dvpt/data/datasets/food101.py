"""Food-101 (CoOp layout): 101 dish classes."""
from __future__ import annotations

from .coop_common import ZhouDataset, folder_generator

ZhouDataset(
    name="food101", dirname="food-101", image_subdir="images", split_file="split_zhou_Food101.json",
    num_classes=101, description="Food-101 dishes (split generated 50/20/30 when missing)",
    generate=folder_generator(), extra_layout=("meta/",),
).register()
