"""Contract settings for FocalAttentionUNet (seed 002): tiny widths, a 3-pixel window, dilation in the bottleneck."""

from __future__ import annotations

from . import NetCase

__all__ = ["CASES"]

CASES = [
    NetCase(
        name="focalattentionunet",
        kwargs={"features": (4, 8, 16), "kernel_size": 3, "attention_reduction": 2, "dilations": (1, 1, 2)},
        invalid_kwargs=[
            {"features": (4,)},
            {"features": (4, 0, 16)},
            {"kernel_size": 4},
            {"kernel_size": 0},
            {"kernel_size": 1},
            {"kernel_size": (3, 3, 3)},
            {"attention_levels": ["decoder2"]},
            {"attention_levels": ["bottleneck", "bottleneck"]},
            {"attention_reduction": 0},
            {"dilations": (1, 2)},
            {"dilations": (1, 1, 0)},
            {"upsample": "pixelshuffle"},
            {"dropout": 1.0},
        ],
    )
]
