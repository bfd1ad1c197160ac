"""Oxford-IIIT Pets (CoOp layout): 37 breeds; the split file is required."""
from __future__ import annotations

from .coop_common import ZhouDataset

ZhouDataset(
    name="oxford_pets", dirname="oxford_pets", image_subdir="images", split_file="split_zhou_OxfordPets.json",
    num_classes=37, description="Oxford-IIIT Pets breeds", extra_layout=("annotations/",),
).register()
