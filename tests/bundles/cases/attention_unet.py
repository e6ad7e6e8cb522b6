"""Tiny settings for the attention_unet bundle tests: 4..32 features, 32^3 patches and windows, small phantoms.

The phantoms keep the default field of view (128 x 128 x 160 mm) on a 32^3 grid (4 x 4 x 5 mm; the pancreas still
has 30-60 voxels), and training runs at that spacing (its record gives it to inference), so a case is one 32^3 window:
one epoch, validation and inference take seconds.
"""

from __future__ import annotations

_SAMPLE = {"num_cases": 8, "num_test": 2, "shape": [32, 32, 32], "spacing": [4.0, 4.0, 5.0]}

CASE = {
    "net": {"network_def#features": [4, 8, 16, 32]},
    "train": {
        "quick_epochs": 1,
        "val_interval": 1,
        "train_patch_size": [32, 32, 32],
        "roi_size": [32, 32, 32],
        "target_spacing": [4.0, 4.0, 5.0],
        "num_samples": 1,
        "embedded_sample": _SAMPLE,
    },
    "infer": {"roi_size": [32, 32, 32], "embedded_sample": _SAMPLE},
    # NIfTI outputs are "<case>_seg.nii.gz"; the generic test compares Path.stem ("<case>_seg.nii") with the postfix
    "outputs": ("seg.nii",),
    "output_ext": ".nii.gz",
    # the generic geometry check writes 2D images; the 3D round trips are in tests/bundles/test_attention_unet.py
    "inputs": [],
    "max_label": {"seg.nii": 2},
}
