"""MCSA-UNet: a U-Net whose five encoder levels are enhanced by CSA blocks (channel + spatial attention + residual).

Liu G., Yan K., Zhang L., Liu Y., Ma H., Zhang Q., "A cell nucleus segmentation method based on attention mechanism
and residual structure" (基于注意力机制和残差结构的细胞核分割方法), Optoelectronics·Laser 34 (2023).
See ``docs/architectures/mcsa_unet.md`` for the equation-to-code map and the readings taken where the paper is vague.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pad, Pool
from torch import nn

from ..blocks.conv_blocks import DoubleConv
from ..blocks.csa import CSAEncoderStage
from ..registry import register_network
from ..utils import attention_maps_method, check_channels, check_five_levels, check_input_size, check_spatial_dims

__all__ = ["MCSAUNet"]

_UP_MODES = ("deconv", "nearest")


def _up_conv(spatial_dims: int, in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """The U-Net "up-conv": 2x upsampling with a 2x2 convolution that maps ``in_channels`` to ``out_channels``."""
    if mode == "deconv":  # learned upsampling: transposed 2x2 conv, stride 2 (U-Net's own realisation)
        return Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
    # literal: nearest 2x upsampling, then a stride-1 2x2 conv; pad one voxel at the far end of each axis
    # (what padding="same" does for an even kernel) so the size is kept.
    return nn.Sequential(
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        Pad[Pad.CONSTANTPAD, spatial_dims]((0, 1) * spatial_dims, 0.0),
        Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=2),
    )


@register_network("mcsaunet")
class MCSAUNet(nn.Module):
    """MCSA-UNet (Liu et al., Optoelectronics·Laser 2023) for 2D and 3D segmentation.

    Encoder: five levels, each two 3x3 convolutions + ReLU (``F1``) followed by a CSA block (channel attention,
    spatial attention, residual sum: eqs. 1-5) giving ``F1'``; ``F1'`` feeds the skip connection and, after 2x2 max
    pooling (eq. 6), the next level. Decoder: four levels of up-conv (2x upsampling + 2x2 convolution), concatenation
    with the skip, two 3x3 convolutions; a 1x1 convolution gives the logits. No deep supervision (the paper has none).

    The three switches reproduce the rows of the paper's ablation table (Tab. 1): all off is the plain U-Net (no
    attention or residual parameters at all); with no attention, ``use_residual`` makes each level a ResNet-style
    unit with a 1x1-projected shortcut of the level input (see the docs, "Readings").

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes, logits).
        features: channels of the five levels, shallow to deep (U-Net's ``(64, 128, 256, 512, 1024)``).
        reduction: channel-attention MLP reduction ratio (hidden width ``max(C // reduction, 4)``).
        spatial_kernel_size: odd kernel size of the spatial-attention convolution (7 in the paper).
        use_channel_attention: channel attention (eqs. 1, 3) in every CSA block.
        use_spatial_attention: spatial attention (eqs. 2, 4) in every CSA block.
        use_residual: residual structure (eq. 5).
        act: activation spec of the 3x3 convolutions (``"relu"`` in the paper).
        norm: normalisation spec of the 3x3 convolutions; default ``"batch"``; ``None`` gives the paper as written.
        dropout: dropout probability after each 3x3 convolution.
        up_mode: ``"deconv"`` (transposed 2x2 convolution, stride 2: U-Net's up-conv as usually realised) or
            ``"nearest"`` (nearest 2x upsampling followed by a 2x2 convolution, the paper's wording taken literally).

    Raises:
        ValueError: on invalid ``spatial_dims``, channel counts, ``features`` (not five positive integers),
            ``reduction``, ``spatial_kernel_size``, ``dropout`` or ``up_mode``; ``forward`` raises it when a spatial
            size of the input is not a multiple of 16.

    Examples::

        >>> net = MCSAUNet(spatial_dims=2, in_channels=3, out_channels=2)
        >>> net(torch.randn(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
        >>> net3d = MCSAUNet(3, 1, 3, features=(16, 32, 64, 128, 256), norm="instance")
        >>> net3d(torch.randn(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
        >>> plain_unet = MCSAUNet(2, 3, 2, use_channel_attention=False, use_spatial_attention=False, use_residual=False)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        use_channel_attention: bool = True,
        use_spatial_attention: bool = True,
        use_residual: bool = True,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        up_mode: str = "deconv",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_spatial_dims(spatial_dims, name)
        check_channels(name, in_channels=in_channels, out_channels=out_channels)
        features = check_five_levels(name, features)
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"{name}: reduction must be a positive integer (16 in CBAM), got {reduction!r}.")
        if not isinstance(spatial_kernel_size, int) or spatial_kernel_size < 1 or spatial_kernel_size % 2 == 0:
            raise ValueError(
                f"{name}: spatial_kernel_size must be a positive odd integer (7 in the paper), "
                f"got {spatial_kernel_size!r}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}.")
        if up_mode not in _UP_MODES:
            raise ValueError(f"{name}: up_mode must be one of {_UP_MODES}, got {up_mode!r}.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.size_divisible_by: int = 16  # four 2x2 max-poolings

        self.encoder = nn.ModuleList()
        for cin, cout in zip((in_channels,) + features[:-1], features):
            self.encoder.append(
                CSAEncoderStage(
                    spatial_dims,
                    cin,
                    cout,
                    act=act,
                    norm=norm,
                    dropout=dropout,
                    reduction=reduction,
                    spatial_kernel_size=spatial_kernel_size,
                    use_channel_attention=use_channel_attention,
                    use_spatial_attention=use_spatial_attention,
                    use_residual=use_residual,
                )
            )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)  # eq. 6

        self.up_convs = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for deep, shallow in zip(features[:0:-1], features[-2::-1]):
            self.up_convs.append(_up_conv(spatial_dims, deep, shallow, up_mode))
            self.decoder.append(DoubleConv(spatial_dims, 2 * shallow, shallow, act=act, norm=norm, dropout=dropout))
        self.head = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.size_divisible_by, "MCSAUNet")
        skips: list[torch.Tensor] = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)  # eq. 6: F2 = Max_pooling(F1')
            x = stage(x)
            skips.append(x)
        for i, (up, block) in enumerate(zip(self.up_convs, self.decoder)):
            x = block(torch.cat([skips[-2 - i], up(x)], dim=1))
        return self.head(x)

    @attention_maps_method
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval-mode channel and spatial attention maps of the five CSA blocks (empty without attention).

        Keys ``"level{k}.channel"`` (``M_FC``, shape ``(B, C_k, 1, ...)``) and ``"level{k}.spatial"`` (``M_FS``,
        shape ``(B, 1, *spatial_k)`` at level ``k``'s resolution), ``k = 1..5`` shallow to deep; values in [0, 1].

        Raises:
            ValueError: when a spatial size of ``x`` is not a multiple of 16.
        """
        maps: dict[str, torch.Tensor] = {}
        for i, stage in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x, channel_map, spatial_map = stage.forward_with_maps(x)
            if channel_map is not None:
                maps[f"level{i + 1}.channel"] = channel_map
            if spatial_map is not None:
                maps[f"level{i + 1}.spatial"] = spatial_map
        return maps
