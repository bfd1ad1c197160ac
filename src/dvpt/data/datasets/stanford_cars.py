"""Stanford Cars (CoOp layout): 196 models; split paths start at the dataset folder."""
from __future__ import annotations

from .coop_common import ZhouDataset

ZhouDataset(
    name="stanford_cars", dirname="stanford_cars", image_subdir="", split_file="split_zhou_StanfordCars.json",
    num_classes=196, description="Stanford Cars models",
    extra_layout=("cars_train/", "cars_test/", "devkit/", "cars_test_annos_withlabels.mat"),
).register()
