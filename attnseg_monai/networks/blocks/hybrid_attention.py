"""Building blocks of Han-Net (He et al., "A Hybrid-Attention Nested UNet for Nuclear Segmentation in
Histopathological Images", 2021): the residual spatial attention on skip connections, the nested (UNet++ style)
decoder node and the full-scale decoder node of the seed-literal reading (same-level skip plus every deeper encoder
level).

The channel attention at the end of Han-Net's encoder is the squeeze-and-excitation gate
:class:`attnseg_monai.networks.blocks.cbam.ChannelAttention` with ``pooling=("avg",)``; it is not repeated here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UpSample
from torch import nn

from .cbam import SpatialAttention
from .conv_blocks import DoubleConv

__all__ = ["FullScaleNode", "NestedNode", "SkipSpatialAttention"]

_UPSAMPLE_MODES = ("deconv", "nontrainable")


class SkipSpatialAttention(nn.Module):
    """Residual spatial attention on a skip connection, ``s' = s + s * A(s)``.

    ``A(s) = sigmoid(f_kxk([mean_c(s); max_c(s)]))`` is a one-channel map in [0, 1] at the resolution of ``s``
    (the CBAM spatial map, :class:`~attnseg_monai.networks.blocks.cbam.SpatialAttention`). Multiplying it in
    stresses the positions it selects (nuclei and their boundaries); the residual add keeps every feature, so a
    map near zero cannot erase the skip.

    Args:
        spatial_dims: 2 or 3.
        kernel_size: odd size of the convolution that turns the two channel-pooled maps into the logits.

    Returns (forward): the tuple ``(s', A(s))`` with shapes ``(B, C, *spatial)`` and ``(B, 1, *spatial)``.

    Raises:
        ValueError: if ``kernel_size`` is even or smaller than 1.

    Examples::

        >>> unit = SkipSpatialAttention(spatial_dims=2)
        >>> refined, amap = unit(torch.randn(2, 16, 64, 64))
        >>> refined.shape, amap.shape
        (torch.Size([2, 16, 64, 64]), torch.Size([2, 1, 64, 64]))
        >>> refined, amap = SkipSpatialAttention(spatial_dims=3, kernel_size=3)(torch.randn(1, 8, 16, 16, 16))
        >>> amap.shape
        torch.Size([1, 1, 16, 16, 16])
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.attention = SpatialAttention(spatial_dims, kernel_size=kernel_size)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.attention(s)
        # s + s * a written as one broadcast product: the (1 + a) map has one channel, so this is cheaper.
        return s * (1.0 + a), a


class NestedNode(nn.Module):
    """A decoder node ``X^{i,j}`` of a nested (UNet++ style) U-Net with dense skip pathways.

    The node upsamples the deeper node ``X^{i+1,j-1}`` by 2 to ``channels`` features, concatenates it after ALL
    earlier nodes of its own level ``X^{i,0..j-1}`` (``num_same_level = j`` tensors of ``channels`` features each)
    and applies two convolutions: ``X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})])``.

    Args:
        spatial_dims: 2 or 3.
        num_same_level: number of same-level inputs ``j`` (>= 1).
        channels: feature channels of the node's level (of each same-level input and of the output).
        deeper_channels: feature channels of the deeper node.
        act: activation spec of the convolutions.
        norm: normalisation spec of the convolutions.
        dropout: dropout probability after each convolution.
        upsample: ``"deconv"`` (2x2 transposed convolution) or ``"nontrainable"`` (1x1 convolution, then
            linear interpolation).

    Raises:
        ValueError: if ``num_same_level < 1`` or ``upsample`` is unknown.

    Examples::

        >>> node = NestedNode(2, num_same_level=2, channels=16, deeper_channels=32)
        >>> node([torch.randn(1, 16, 64, 64)] * 2, torch.randn(1, 32, 32, 32)).shape
        torch.Size([1, 16, 64, 64])
        >>> node = NestedNode(3, num_same_level=1, channels=8, deeper_channels=16, upsample="nontrainable")
        >>> node([torch.randn(1, 8, 16, 16, 16)], torch.randn(1, 16, 8, 8, 8)).shape
        torch.Size([1, 8, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        num_same_level: int,
        channels: int,
        deeper_channels: int,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        if num_same_level < 1:
            raise ValueError(
                f"num_same_level must be >= 1 (a decoder node has same-level inputs), got {num_same_level}."
            )
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {_UPSAMPLE_MODES}, got {upsample!r}.")
        self.num_same_level = num_same_level
        self.up = UpSample(
            spatial_dims,
            deeper_channels,
            channels,
            scale_factor=2,
            mode=upsample,
            interp_mode="linear",
            align_corners=False,
        )
        self.conv = DoubleConv(spatial_dims, (num_same_level + 1) * channels, channels, act, norm, dropout)

    def forward(self, same_level: list[torch.Tensor], deeper: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat(same_level + [self.up(deeper)], dim=1))


class FullScaleNode(nn.Module):
    """A decoder node ``D_i`` that receives its level's skip, EVERY deeper encoder level and the deeper decoder node.

    ``D_i = H([s_i, U_1(e_1), ..., U_n(e_n), Up(d)])``: ``s_i`` is the same-level skip (``channels`` features),
    ``e_k`` the encoder level ``k`` levels deeper (``2**k`` times smaller, ``encoder_channels[k - 1]`` features) and
    ``d`` the decoder node one level deeper (``decoder_channels`` features; absent when ``decoder_channels`` is
    ``None``). Every deeper input is brought to ``channels`` features at the node's resolution: inputs one level down
    by ``upsample`` (as a nested node does), inputs further down by a 1x1 convolution and linear interpolation (a
    transposed convolution of kernel ``2**k`` would need ``C_k * channels * 2**(k * spatial_dims)`` weights). ``H`` is
    two convolutions to ``channels`` features. This is the connectivity the Han-Net seed states for the decoder ("each
    decoder level receives the same-level encoder features and the upsampled features of all deeper encoder levels").

    Args:
        spatial_dims: 2 or 3.
        channels: feature channels of the node's level (of the skip and of the output).
        encoder_channels: feature channels of the deeper encoder levels, nearest first (at least one).
        decoder_channels: feature channels of the deeper decoder node, or ``None`` for a node without one.
        act: activation spec of the convolutions.
        norm: normalisation spec of the convolutions.
        dropout: dropout probability after each convolution.
        upsample: ``"deconv"`` or ``"nontrainable"`` for the inputs one level down.

    Raises:
        ValueError: if ``encoder_channels`` is empty or ``upsample`` is unknown.

    Examples::

        >>> node = FullScaleNode(2, channels=8, encoder_channels=(16, 32), decoder_channels=16)
        >>> node(torch.randn(1, 8, 64, 64), [torch.randn(1, 16, 32, 32), torch.randn(1, 32, 16, 16)],
        ...      torch.randn(1, 16, 32, 32)).shape
        torch.Size([1, 8, 64, 64])
        >>> node = FullScaleNode(3, channels=8, encoder_channels=(16,), decoder_channels=None)
        >>> node(torch.randn(1, 8, 16, 16, 16), [torch.randn(1, 16, 8, 8, 8)], None).shape
        torch.Size([1, 8, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        encoder_channels: Sequence[int],
        decoder_channels: int | None,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        encoder_channels = tuple(encoder_channels)
        if not encoder_channels:
            raise ValueError("encoder_channels must list at least one deeper encoder level.")
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {_UPSAMPLE_MODES}, got {upsample!r}.")
        self.num_encoder_inputs = len(encoder_channels)
        self.encoder_up = nn.ModuleList(
            UpSample(
                spatial_dims,
                c,
                channels,
                scale_factor=2**k,
                mode=upsample if k == 1 else "nontrainable",
                interp_mode="linear",
                align_corners=False,
            )
            for k, c in enumerate(encoder_channels, start=1)
        )
        self.decoder_up: nn.Module | None = None
        if decoder_channels is not None:
            self.decoder_up = UpSample(
                spatial_dims,
                decoder_channels,
                channels,
                scale_factor=2,
                mode=upsample,
                interp_mode="linear",
                align_corners=False,
            )
        inputs = 1 + len(encoder_channels) + (decoder_channels is not None)
        self.conv = DoubleConv(spatial_dims, inputs * channels, channels, act, norm, dropout)

    def forward(
        self, skip: torch.Tensor, deeper_encoder: list[torch.Tensor], deeper_decoder: torch.Tensor | None
    ) -> torch.Tensor:
        parts = [skip]
        for k, up in enumerate(self.encoder_up):
            parts.append(up(deeper_encoder[k]))
        if self.decoder_up is not None and deeper_decoder is not None:
            parts.append(self.decoder_up(deeper_decoder))
        return self.conv(torch.cat(parts, dim=1))
