"""SUN397 (CoOp layout): 397 scene classes; split paths look like ``a/abbey/sun_x.jpg``; a
missing split is generated from ClassName.txt and the first partition."""
from __future__ import annotations

from . import annotation_splits
from .coop_common import ZhouDataset

ZhouDataset(
    name="sun397", dirname="sun397", image_subdir="SUN397", split_file="split_zhou_SUN397.json",
    num_classes=397, description="SUN397 scenes",
    extra_layout=("ClassName.txt", "Training_01.txt", "Testing_01.txt"),
    generate=annotation_splits.sun397, split_recipe="80/20 train/val of Training_01.txt, Testing_01.txt as test",
).register()
