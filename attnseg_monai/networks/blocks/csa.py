"""The CSA feature-enhancement block of MCSA-UNet and the encoder stage built around it.

Liu G., Yan K., Zhang L., Liu Y., Ma H., Zhang Q., "A cell nucleus segmentation method based on attention mechanism
and residual structure" (基于注意力机制和残差结构的细胞核分割方法), Optoelectronics·Laser 34 (2023).

CSA = channel attention, then spatial attention (CBAM order), then a residual sum with the block input:

* eq. 1: ``A_FC = M_FC(F1) * F1``           (channel attention, eq. 3: shared MLP over avg- and max-pooled F1)
* eq. 2: ``A_FS = M_FS(A_FC) * A_FC``       (spatial attention, eq. 4: 7x7 conv over channel-avg and channel-max)
* eq. 5: ``F1' = F1 + A_FS``                (residual structure)

The encoder stage adds the level's two 3x3 convolutions in front (they produce ``F1``) and, for the ablation row
"residual structure without attention", a ResNet-style 1x1-projected shortcut of the stage input instead of eq. 5.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from .cbam import ChannelAttention, SpatialAttention
from .conv_blocks import DoubleConv

__all__ = ["CSABlock", "CSAEncoderStage"]


class CSABlock(nn.Module):
    """CSA block of MCSA-UNet: channel attention, spatial attention and the residual sum (eqs. 1-5).

    ``forward`` returns ``F1'``; :meth:`forward_with_maps` also returns the channel map ``M_FC(F1)`` of shape
    ``(B, C, 1, ...)`` and the spatial map ``M_FS(A_FC)`` of shape ``(B, 1, *spatial)`` (``None`` for a branch that
    is switched off). With one branch off, the other acts on ``F1`` directly (the ablation rows "+CA" and "+SA").

    Args:
        spatial_dims: 2 or 3.
        channels: channels C of ``F1`` (input and output).
        reduction: channel-attention MLP reduction ratio (hidden width ``max(C // reduction, 4)``).
        spatial_kernel_size: odd kernel size of the spatial-attention convolution (7 in the paper).
        use_channel_attention: apply eq. 1 (``M_FC``).
        use_spatial_attention: apply eq. 2 (``M_FS``).
        use_residual: return ``F1 + A_FS`` (eq. 5); otherwise return ``A_FS``.

    Raises:
        ValueError: if both attention branches are off (the block would be an identity or a doubling: use
            :class:`CSAEncoderStage` for a residual without attention), if ``channels`` or ``reduction`` is not a
            positive integer, or if ``spatial_kernel_size`` is not a positive odd integer.

    Examples::

        >>> block = CSABlock(spatial_dims=2, channels=64)
        >>> block(torch.randn(2, 64, 32, 32)).shape
        torch.Size([2, 64, 32, 32])
        >>> block3d = CSABlock(spatial_dims=3, channels=32, reduction=8, spatial_kernel_size=3)
        >>> out, channel_map, spatial_map = block3d.forward_with_maps(torch.randn(1, 32, 8, 8, 8))
        >>> channel_map.shape, spatial_map.shape
        (torch.Size([1, 32, 1, 1, 1]), torch.Size([1, 1, 8, 8, 8]))
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        use_channel_attention: bool = True,
        use_spatial_attention: bool = True,
        use_residual: bool = True,
    ) -> None:
        super().__init__()
        if not (use_channel_attention or use_spatial_attention):
            raise ValueError(
                "CSABlock needs use_channel_attention or use_spatial_attention (or both); for a residual unit "
                "without attention use CSAEncoderStage with both attention switches off."
            )
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"CSABlock: channels must be a positive integer, got {channels!r}.")
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"CSABlock: reduction must be a positive integer, got {reduction!r}.")
        if not isinstance(spatial_kernel_size, int) or spatial_kernel_size < 1 or spatial_kernel_size % 2 == 0:
            raise ValueError(
                f"CSABlock: spatial_kernel_size must be a positive odd integer (e.g. 7), got {spatial_kernel_size!r}."
            )
        self.channel_attention = (
            ChannelAttention(spatial_dims, channels, reduction=reduction) if use_channel_attention else None
        )
        self.spatial_attention = (
            SpatialAttention(spatial_dims, kernel_size=spatial_kernel_size) if use_spatial_attention else None
        )
        self.use_residual = bool(use_residual)

    def forward_with_maps(self, f1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Return ``(F1', M_FC(F1), M_FS(A_FC))``; a map is ``None`` when its branch is off."""
        attended = f1
        channel_map: torch.Tensor | None = None
        spatial_map: torch.Tensor | None = None
        if self.channel_attention is not None:
            channel_map = self.channel_attention(attended)  # eq. 3
            attended = channel_map * attended  # eq. 1: A_FC
        if self.spatial_attention is not None:
            spatial_map = self.spatial_attention(attended)  # eq. 4
            attended = spatial_map * attended  # eq. 2: A_FS
        if self.use_residual:
            attended = f1 + attended  # eq. 5: F1'
        return attended, channel_map, spatial_map

    def forward(self, f1: torch.Tensor) -> torch.Tensor:
        return self.forward_with_maps(f1)[0]


class CSAEncoderStage(nn.Module):
    """One encoder level of MCSA-UNet: two 3x3 conv + norm + ReLU giving ``F1``, then the CSA block giving ``F1'``.

    With both attention switches off the stage has no CSA block; ``use_residual`` then turns it into a ResNet-style
    unit ``F1' = DoubleConv(x) + P(x)`` with ``P`` a 1x1 convolution (+ norm) projecting the stage input ``x``
    (the "+Res" ablation row); with everything off it is the plain U-Net unit ``F1' = F1``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the stage input.
        out_channels: channels of ``F1`` and ``F1'``.
        act: activation spec of the convolutions (``"relu"`` in the paper).
        norm: normalisation spec of the convolutions, e.g. ``"batch"`` or ``None`` (the paper names none).
        dropout: dropout probability after each convolution.
        reduction: channel-attention MLP reduction ratio.
        spatial_kernel_size: odd kernel size of the spatial-attention convolution.
        use_channel_attention: channel attention in the CSA block.
        use_spatial_attention: spatial attention in the CSA block.
        use_residual: residual structure (eq. 5, or the projected shortcut when there is no attention).

    Raises:
        ValueError: on a non-positive channel count, reduction, or an invalid ``spatial_kernel_size``.

    Examples::

        >>> stage = CSAEncoderStage(2, in_channels=3, out_channels=64)
        >>> stage(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 64, 64, 64])
        >>> stage3d = CSAEncoderStage(3, 1, 16, norm="instance", use_channel_attention=False)
        >>> stage3d(torch.randn(1, 1, 16, 16, 16)).shape
        torch.Size([1, 16, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        use_channel_attention: bool = True,
        use_spatial_attention: bool = True,
        use_residual: bool = True,
    ) -> None:
        super().__init__()
        for key, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CSAEncoderStage: {key} must be a positive integer, got {value!r}.")
        self.convs = DoubleConv(spatial_dims, in_channels, out_channels, act=act, norm=norm, dropout=dropout)
        self.csa: CSABlock | None = None
        self.shortcut: nn.Module | None = None
        if use_channel_attention or use_spatial_attention:
            self.csa = CSABlock(
                spatial_dims,
                out_channels,
                reduction=reduction,
                spatial_kernel_size=spatial_kernel_size,
                use_channel_attention=use_channel_attention,
                use_spatial_attention=use_spatial_attention,
                use_residual=use_residual,
            )
        elif use_residual:
            self.shortcut = Convolution(
                spatial_dims, in_channels, out_channels, kernel_size=1, act=None, norm=norm, bias=norm is None
            )

    def forward_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Return ``(F1', channel map, spatial map)``; the maps are ``None`` where there is no attention."""
        f1 = self.convs(x)
        if self.csa is not None:
            return self.csa.forward_with_maps(f1)
        if self.shortcut is not None:
            f1 = f1 + self.shortcut(x)
        return f1, None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_maps(x)[0]
