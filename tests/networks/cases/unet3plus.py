"""Contract settings for UNet 3+ (``unet3plus``): tiny widths, with and without full-scale deep supervision."""

from __future__ import annotations

from tests.networks.cases import NetCase

__all__ = ["CASES"]

_INVALID = [
    {"features": (4, 8, 16, 32)},
    {"features": (4, 8, 16, 32, 64, 128)},
    {"features": (4, 8, 0, 8, 16)},
    {"cat_channels": 0},
    {"cat_channels": True},
    {"dropout": 1.0},
]

CASES = [
    NetCase(name="unet3plus", kwargs={"features": (4, 4, 8, 8, 16)}, invalid_kwargs=_INVALID),
    NetCase(
        name="unet3plus",
        variant="deep_supervision",
        kwargs={"features": (4, 4, 8, 8, 16), "cat_channels": 2, "deep_supervision": True},
        deep_supervision={"deep_supervision": True},
        deep_supervision_outputs=5,  # the final map, then the heads of decoder levels 2, 3, 4 and of the bottleneck
    ),
]
