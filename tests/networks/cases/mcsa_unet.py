"""Contract settings for MCSA-UNet (``mcsaunet``): tiny widths so 2D and 3D runs stay fast."""

from __future__ import annotations

from tests.networks.cases import NetCase

__all__ = ["CASES"]

CASES = [
    NetCase(
        name="mcsaunet",
        kwargs={"features": (4, 4, 8, 8, 16), "reduction": 2},
        invalid_kwargs=[
            {"features": (4, 8, 16, 32)},
            {"features": (4, 8, 16, 32, 64, 128)},
            {"features": (4, 8, 0, 8, 16)},
            {"reduction": 0},
            {"spatial_kernel_size": 4},
            {"spatial_kernel_size": 0},
            {"dropout": 1.0},
            {"up_mode": "bilinear"},
        ],
    )
]
