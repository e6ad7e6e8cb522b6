"""Plain convolution blocks shared by the U-Net style networks."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["DoubleConv"]


class DoubleConv(nn.Sequential):
    """Two ``kernel_size`` convolutions, each followed by normalisation, dropout and activation (the U-Net unit).

    The same unit as MONAI's ``monai.networks.nets.basic_unet.TwoConv`` (both are an ``nn.Sequential`` of two MONAI
    ``Convolution`` blocks, conv then ADN in MONAI's ``"NDA"`` order): with ``kernel_size=3``, ``dilation=1``,
    ``bias=(norm is None)`` and the same weights, ``TwoConv`` computes exactly the same output (checked in 2D and 3D).
    It stays a class of its own because it differs where it matters:

    - state-dict keys: its children are ``conv0``/``conv1`` (``TwoConv``: ``conv_0``/``conv_1``), so every network
      built on it (HanNet, MCSA-UNet, FocalAttentionUNet, GridAttentionUNet, DANIE's decoder) keeps the keys of the
      checkpoints already trained with it and of the tests that name these modules;
    - ``dilation`` and ``kernel_size``: ``TwoConv`` fixes a 3x3(x3) kernel with ``padding=1``; FocalAttentionUNet
      needs a dilation rate per level (padding follows the dilation here, so the size is kept);
    - defaults: ``bias`` follows ``norm`` (no bias in front of a normalisation), ``act``/``norm`` default to
      ReLU/batch norm, and ``dropout=0`` adds no dropout layer (``TwoConv`` adds ``Dropout(p=0)``).

    It adds no ``forward`` of its own (``nn.Sequential``'s), so batch-norm folding
    (:func:`attnseg_monai.precision.fold_batch_norm`) enters it like any sequential container.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels of both convolutions.
        act: activation, a MONAI spec such as ``"relu"`` or ``("leakyrelu", {"negative_slope": 0.1})``.
        norm: normalisation spec such as ``"batch"``, ``("instance", {"affine": True})`` or ``None``.
        dropout: dropout probability after each convolution.
        dilation: dilation of both convolutions (padding keeps the size).
        kernel_size: kernel size of both convolutions.

    Examples::

        >>> DoubleConv(2, 3, 16)(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 16, 64, 64])
        >>> DoubleConv(3, 1, 8, norm=("instance", {"affine": True}), dilation=2)(torch.rand(1, 1, 32, 32, 32)).shape
        torch.Size([1, 8, 32, 32, 32])
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
