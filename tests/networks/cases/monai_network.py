"""Contract settings for ``monai`` (:class:`attnseg_monai.networks.nets.MonaiNetwork`): each MONAI class it builds,
tiny widths, batch norm (instance norm cannot normalise the 1x1 bottleneck of the contract's smallest input)."""

from __future__ import annotations

from tests.networks.cases import NetCase

__all__ = ["CASES"]

_BASIC = {"features": (4, 4, 8, 8, 16, 4), "norm": "batch"}

CASES = [
    NetCase(
        name="monai",
        variant="BasicUNet",
        kwargs={"architecture": "BasicUNet", **_BASIC},
        invalid_kwargs=[
            {"architecture": "SwinUNETR"},
            {"architecture": "basicunet"},
            {"deep_supervision": True},  # BasicUNet has none
            {"channels": (4, 8)},
        ],
    ),
    NetCase(
        name="monai",
        variant="BasicUNetPlusPlus",
        # on: without deep supervision MONAI's class still builds the heads of X^{0,1..3}, which then get no gradient
        kwargs={"architecture": "BasicUNetPlusPlus", "deep_supervision": True, **_BASIC},
        deep_supervision={"deep_supervision": True},
        deep_supervision_outputs=4,  # X^{0,4} first, then X^{0,1..3}
    ),
    NetCase(
        name="monai",
        variant="AttentionUnet",
        kwargs={"architecture": "AttentionUnet", "channels": (4, 8, 16), "strides": (2, 2)},
        invalid_kwargs=[{"features": (4, 8, 16)}, {"architecture": "BasicUNet"}],
    ),
    NetCase(
        name="monai",
        variant="UNet",  # residual units: the Res-UNet row of mcsa_unet's comparison table
        kwargs={"architecture": "UNet", "channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 2, "norm": "batch"},
        invalid_kwargs=[{"features": (4, 8, 16)}, {"deep_supervision": True}],
    ),
]
