"""Contract settings for Han-Net (``hannet``): three levels of tiny widths, so inputs are multiples of 4."""

from __future__ import annotations

from tests.networks.cases import NetCase

__all__ = ["CASES"]

CASES = [
    NetCase(
        name="hannet",
        kwargs={"features": (4, 8, 16), "channel_reduction": 2},
        deep_supervision={"deep_supervision": True},
        deep_supervision_outputs=3,  # fused map + one head per top-row decoder node X^{0,1}, X^{0,2}
        invalid_kwargs=[
            {"features": (8,)},
            {"features": (4, 0, 16)},
            {"dropout": 1.0},
            {"upsample": "bicubic"},
            {"channel_reduction": 0},
            {"spatial_kernel_size": 4},
        ],
    ),
]
