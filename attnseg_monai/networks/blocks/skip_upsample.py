"""U-Net decoder step: upsample by 2, concatenate an optional encoder skip, two convolutions."""

from __future__ import annotations

import torch
from monai.networks.blocks import UpSample
from torch import nn

from .conv_blocks import DoubleConv

__all__ = ["SkipUpBlock"]


class SkipUpBlock(nn.Module):
    """``DoubleConv(cat[up(x), skip])``: a 2x transposed convolution, the skip (if any) concatenated, two 3x3 convs.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the coarse input.
        skip_channels: channels of the skip (0 for a block that is always called without one).
        out_channels: output channels.
        norm: normalisation spec (MONAI style).
        act: activation spec (MONAI style).

    Raises:
        ValueError: if ``skip_channels`` is negative.

    Example::

        >>> import torch
        >>> tuple(SkipUpBlock(2, 64, 32, 32)(torch.randn(2, 64, 8, 8), torch.randn(2, 32, 16, 16)).shape)
        (2, 32, 16, 16)
        >>> tuple(SkipUpBlock(3, 32, 0, 16)(torch.randn(2, 32, 4, 4, 4), None).shape)
        (2, 16, 8, 8, 8)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if skip_channels < 0:
            raise ValueError(f"skip_channels must be >= 0, got {skip_channels}.")
        self.up = UpSample(spatial_dims, in_channels, out_channels, scale_factor=2, mode="deconv")
        self.conv = DoubleConv(spatial_dims, out_channels + skip_channels, out_channels, act=act, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)
