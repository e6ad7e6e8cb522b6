"""Tiny settings for the focal_attn_unet bundle tests."""

from __future__ import annotations

CASE = {
    "net": {"network_def#features": [4, 8, 16, 32, 64]},
    "train": {"quick_epochs": 1, "val_interval": 1, "working_size": [64, 64], "train_patch_size": [64, 64]},
    # no working_size: inference reads it from the record beside the tiny checkpoint (64x64, as trained); without a
    # record (plain state dicts) it is the quick recipe's 256x256
    "infer": {},
    "outputs": ("mask",),
    "output_ext": ".png",
    # odd sizes, grey PNG and TIFF: the written masks must come back at (height, width)
    "inputs": [(131, 97, 1, ".png"), (75, 150, 1, ".tif")],
    "max_label": {"mask": 255},
}
