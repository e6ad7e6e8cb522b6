"""Tiny settings for the danie bundle tests: a 4-stage DANIE of widths 8..64, 32x32 slices of 5 small phantoms."""

from __future__ import annotations

_SAMPLE = {"num_cases": 5, "shape": [32, 32, 16]}

CASE = {
    "net": {
        "network_def#embed_dims": [8, 16, 32, 64],
        "network_def#depths": [1, 1, 1, 1],
        "network_def#num_heads": [1, 1, 1, 1],
    },
    "train": {
        "embedded_sample": _SAMPLE,
        "quick_epochs": 1,
        "val_interval": 1,
        "quick_slice_size": [32, 32],
        "slices_per_volume": 4,
        "batch_size": 4,
    },
    "infer": {"embedded_sample": _SAMPLE},
    # the generic test matches ``Path.stem`` (which keeps ".nii" of "x_seg.nii.gz") against these postfixes
    "outputs": ("seg.nii",),
    "output_ext": ".nii.gz",
    "inputs": [],
    "max_label": {"seg.nii": 8},
}
