"""Tiny settings for the hannet bundle tests."""

from __future__ import annotations

CASE = {
    "net": {"network_def#features": [4, 8, 16, 32, 64]},
    "train": {"quick_epochs": 1, "val_interval": 1, "train_patch_size": [64, 64], "roi_size": [64, 64]},
    "infer": {"roi_size": [64, 64]},
    "outputs": ("instances", "classes"),
    "output_ext": ".png",
    "inputs": [(136, 200, 3, ".png"), (120, 72, 3, ".tif")],
    "max_label": {"classes": 2},
}
