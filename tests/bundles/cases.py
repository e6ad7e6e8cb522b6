"""Tiny settings that let every bundle run its real workflows in seconds inside the test suite.

Each entry overrides config ids of the bundle (MONAI's ``id#sub`` syntax). ``train`` applies to train.json
(and multi_gpu_train.json), ``infer`` to inference.json and evaluate.json; ``net`` to both. ``inputs`` describes
odd-sized images written for the mask-geometry check: (height, width, channels, extension).
"""

from __future__ import annotations

from typing import Any

BUNDLE_CASES: dict[str, dict[str, Any]] = {
    "hannet": {
        "net": {"network_def#features": [4, 8, 16, 32, 64]},
        "train": {"quick_epochs": 1, "val_interval": 1, "train_patch_size": [64, 64], "roi_size": [64, 64]},
        "infer": {"roi_size": [64, 64]},
        "outputs": ("instances", "classes"),
        "inputs": [(136, 200, 3, ".png"), (120, 72, 3, ".tif")],
        "max_label": {"classes": 2},
    },
}
