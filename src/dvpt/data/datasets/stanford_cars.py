"""Stanford Cars (CoOp layout): 196 models; split paths start at the dataset folder; a missing
split is generated from the devkit's .mat files."""
from __future__ import annotations

from . import annotation_splits
from .coop_common import ZhouDataset

ZhouDataset(
    name="stanford_cars", dirname="stanford_cars", image_subdir="", split_file="split_zhou_StanfordCars.json",
    num_classes=196, description="Stanford Cars models",
    extra_layout=("cars_train/", "cars_test/", "devkit/", "cars_test_annos_withlabels.mat"),
    generate=annotation_splits.cars, split_recipe="80/20 train/val of the devkit's train annotations, the test annotations as test",
).register()
