"""Describable Textures (CoOp layout): 47 texture classes."""
from __future__ import annotations

from .coop_common import ZhouDataset, folder_generator

ZhouDataset(
    name="dtd", dirname="dtd", image_subdir="images", split_file="split_zhou_DescribableTextures.json",
    num_classes=47, description="Describable Textures (split generated 50/20/30 when missing)",
    generate=folder_generator(),
).register()
