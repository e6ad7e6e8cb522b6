"""Plain convolution blocks shared by the U-Net style networks."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["DoubleConv"]


class DoubleConv(nn.Sequential):
    """Two ``kernel_size`` convolutions, each followed by normalisation, dropout and activation (the U-Net unit).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels of both convolutions.
        act: activation, a MONAI spec such as ``"relu"`` or ``("leakyrelu", {"negative_slope": 0.1})``.
        norm: normalisation spec such as ``"batch"``, ``("instance", {"affine": True})`` or ``None``.
        dropout: dropout probability after each convolution.
        dilation: dilation of both convolutions (padding keeps the size).
        kernel_size: kernel size of both convolutions.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        dilation: int | Sequence[int] = 1,
        kernel_size: int | Sequence[int] = 3,
    ) -> None:
        super().__init__()
        for i, cin in enumerate((in_channels, out_channels)):
            self.add_module(
                f"conv{i}",
                Convolution(
                    spatial_dims,
                    cin,
                    out_channels,
                    kernel_size=kernel_size,
                    act=act,
                    norm=norm,
                    dropout=dropout if dropout > 0 else None,
                    dilation=dilation,
                    bias=norm is None,
                ),
            )
