"""EuroSAT RGB (CoOp layout): 10 land-cover classes, renamed to readable phrases."""
from __future__ import annotations

from .coop_common import ZhouDataset, folder_generator

#: CoOp's names: "Highway" alone is ambiguous for CLIP, "Highway or Road" reads as a scene.
NEW_NAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}

ZhouDataset(
    name="eurosat", dirname="eurosat", image_subdir="2750", split_file="split_zhou_EuroSAT.json",
    num_classes=10, description="EuroSAT satellite land cover (split generated 50/20/30 when missing)",
    generate=folder_generator(rename=NEW_NAMES), rename=lambda name: NEW_NAMES.get(name, name),
).register()
