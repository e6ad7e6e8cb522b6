"""Tiny settings for the mcsa_unet bundle tests: 4..64 features, 64x64 patches and windows, small generated slides."""

from __future__ import annotations

# the embedded sample at a small size (the maker's defaults are 6 slides of 1720x1280); train and infer must agree,
# or inference would rewrite the sample the training made
_SAMPLE = {"num_slides": 6, "width": 232, "height": 168}

CASE = {
    "net": {"features": [4, 8, 16, 32, 64]},
    "train": {"quick_epochs": 1, "train_patch_size": [64, 64], "roi_size": [64, 64], "embedded_sample": _SAMPLE},
    "infer": {"roi_size": [64, 64], "embedded_sample": _SAMPLE},
    "outputs": ("classes",),
    "output_ext": ".png",
    # odd sizes, PNG and TIFF, one input smaller than the 64x64 window
    "inputs": [(137, 201, 3, ".png"), (121, 75, 3, ".tif"), (45, 61, 3, ".png")],
    "max_label": {"classes": 1},
}
