"""Caltech101 (CoOp layout): 100 object classes, ``BACKGROUND_Google`` and ``Faces_easy`` dropped."""
from __future__ import annotations

from .coop_common import ZhouDataset, folder_generator

#: CoOp's renames, so prompts read "a photo of a face." rather than "... a Faces."
NEW_NAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
IGNORED = ("BACKGROUND_Google", "Faces_easy")

ZhouDataset(
    name="caltech101", dirname="caltech-101", image_subdir="101_ObjectCategories",
    split_file="split_zhou_Caltech101.json", num_classes=100,
    description="Caltech101 objects (split generated 50/20/30 when missing)",
    generate=folder_generator(IGNORED, NEW_NAMES), rename=lambda name: NEW_NAMES.get(name, name),
).register()
