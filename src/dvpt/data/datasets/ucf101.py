"""UCF101 middle frames (CoOp layout): 101 actions, CamelCase folder names split into words; a
missing split is generated from the official ucfTrainTestlist/ (split 1)."""
from __future__ import annotations

from . import annotation_splits
from .coop_common import ZhouDataset, camel_to_words

ZhouDataset(
    name="ucf101", dirname="ucf101", image_subdir="UCF-101-midframes", split_file="split_zhou_UCF101.json",
    num_classes=101, description="UCF101 actions (middle video frames)",
    # CoOp's json already holds "Apply_Eye_Makeup"; a CamelCase name is split the same way.
    rename=lambda name: name if "_" in name else camel_to_words(name),
    generate=annotation_splits.ucf101, split_recipe="80/20 train/val of trainlist01.txt, testlist01.txt as test",
).register()
