"""FocalAttentionUNet: a U-Net with neighbourhood attention blocks and optional dilated deep layers (seed 002).

The seed (a blog-style summary, "architecture design for medical image segmentation", NIH chest X-rays) improves
a U-Net with focal loss, an "Attention Block" and resolution enhancement by dilation or a CRF. This module holds the
network part: a U-Net whose chosen levels end in a
:class:`~attnseg_monai.networks.blocks.neighbourhood_attention.NeighbourhoodAttention` block, and whose deep encoder
levels can use dilated 3x3 convolutions. Focal loss and the CRF are not part of the network: use
``monai.losses.FocalLoss`` / ``monai.losses.DiceFocalLoss`` and ``monai.networks.blocks.CRF``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UpSample
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from ..blocks.conv_blocks import DoubleConv
from ..blocks.neighbourhood_attention import NeighbourhoodAttention, check_kernel_size
from ..registry import register_network
from ..utils import attention_maps_method, check_channels, check_input_size, check_spatial_dims

__all__ = ["FocalAttentionUNet"]

_UPSAMPLE_MODES = ("deconv", "nontrainable")


class _DecoderStage(nn.Module):
    """Upsample by 2, concatenate the skip, a DoubleConv, then the attention block (or an identity)."""

    def __init__(self, up: nn.Module, conv: nn.Module, attention: nn.Module) -> None:
        super().__init__()
        self.up = up
        self.conv = conv
        self.attention = attention

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.attention(self.conv(torch.cat([skip, self.up(x)], dim=1)))


@register_network("focalattentionunet")
class FocalAttentionUNet(nn.Module):
    """U-Net with neighbourhood attention blocks and optional dilated deep encoder levels (seed 002).

    Levels are numbered by resolution: level ``i`` works at ``1 / 2**i`` of the input size, level
    ``len(features) - 1`` is the bottleneck. Attention locations are named ``"encoder{i}"`` (after the DoubleConv
    of encoder level ``i``, ``0 <= i < len(features) - 1``), ``"bottleneck"``, and ``"decoder{i}"`` (after the
    DoubleConv of the decoder stage at level ``i``, ``0 <= i < len(features) - 1``). Each block refines the
    features with softmax attention over a ``k x k (x k)`` window and a residual 1x1 interaction convolution.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes, background included).
        features: channels per level, shallow to deep; at least 2 entries (one pooling).
        kernel_size: odd attention window, an int or one per spatial dimension; ``None`` gives 7 in 2D and 5 in 3D.
        attention_levels: locations that get an attention block (names above); ``None`` gives
            ``("bottleneck", "decoder{len(features) - 2}")``, the two lowest-resolution places; ``()`` gives a plain
            U-Net (the seed's baseline).
        attention_reduction: the attention's query/key width is ``C // attention_reduction`` (at least 1).
        dilations: dilation rate of both 3x3 convolutions of each encoder level, one per entry of ``features``;
            ``None`` means no dilation. The seed's resolution enhancement by dilation is ``(1, 1, 1, 2, 4)`` for the
            default five levels (rates 2 and 4 in the two deepest levels); it adds no parameters.
        upsample: ``"deconv"`` (2x2 transposed convolution) or ``"nontrainable"`` (1x1 convolution, then linear
            interpolation).
        act: activation spec of the convolutions, e.g. ``"relu"``.
        norm: normalisation spec of the convolutions and attention blocks, e.g. ``"batch"`` or ``"instance"``.
        dropout: dropout probability in the DoubleConv units.

    Raises:
        ValueError: on bad dimensions or channels, fewer than 2 or non-positive ``features``, a bad ``kernel_size``,
            unknown or repeated ``attention_levels``, a bad ``attention_reduction``, ``dilations`` of the wrong
            length or with rates below 1, an unknown ``upsample`` mode, or ``dropout`` outside [0, 1).

    Examples::

        >>> net = FocalAttentionUNet(2, in_channels=1, out_channels=2)  # lung fields in chest X-rays
        >>> net.eval()(torch.randn(1, 1, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
        >>> net3d = FocalAttentionUNet(3, 1, 3, features=(16, 32, 64, 128), dilations=(1, 1, 2, 4))
        >>> net3d.eval()(torch.randn(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (32, 64, 128, 256, 512),
        kernel_size: int | Sequence[int] | None = None,
        attention_levels: Sequence[str] | str | None = None,
        attention_reduction: int = 8,
        dilations: Sequence[int] | None = None,
        upsample: str = "deconv",
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_spatial_dims(spatial_dims, name)
        check_channels(name, in_channels=in_channels, out_channels=out_channels)
        features = tuple(features)
        if len(features) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in features):
            raise ValueError(f"{name}: features must be at least 2 positive integers, got {features!r}.")
        depth = len(features)
        if kernel_size is None:
            kernel_size = 7 if spatial_dims == 2 else 5
        kernel_size = check_kernel_size(kernel_size, spatial_dims)
        locations = self._check_attention_levels(attention_levels, depth)
        if isinstance(attention_reduction, bool) or not isinstance(attention_reduction, int) or attention_reduction < 1:
            raise ValueError(f"{name}: attention_reduction must be a positive integer, got {attention_reduction!r}.")
        dilations = (1,) * depth if dilations is None else tuple(dilations)
        if len(dilations) != depth or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in dilations):
            raise ValueError(
                f"{name}: dilations must give one positive integer rate per level ({depth} for features={features}), "
                f"e.g. {(1,) * (depth - 2) + (2, 4)}; got {dilations!r}."
            )
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(f"{name}: upsample must be one of {_UPSAMPLE_MODES}, got {upsample!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.kernel_size = kernel_size
        self.attention_levels = locations
        self.dilations = dilations
        self.size_divisible_by: int = 2 ** (depth - 1)

        def attention(location: str, channels: int) -> nn.Module:
            if location not in locations:
                return nn.Identity()
            return NeighbourhoodAttention(spatial_dims, channels, kernel_size, attention_reduction, norm)

        def double_conv(cin: int, cout: int, dilation: int = 1) -> DoubleConv:
            return DoubleConv(spatial_dims, cin, cout, act=act, norm=norm, dropout=dropout, dilation=dilation)

        pool = Pool[Pool.MAX, spatial_dims]
        encoder = [
            nn.Sequential(double_conv(in_channels, features[0], dilations[0]), attention("encoder0", features[0]))
        ]
        for i in range(1, depth):
            where = "bottleneck" if i == depth - 1 else f"encoder{i}"
            encoder.append(
                nn.Sequential(
                    pool(kernel_size=2, stride=2),
                    double_conv(features[i - 1], features[i], dilations[i]),
                    attention(where, features[i]),
                )
            )
        self.encoder = nn.ModuleList(encoder)
        decoder = []
        for i in reversed(range(depth - 1)):  # deepest decoder stage first
            up = UpSample(spatial_dims, features[i + 1], features[i], scale_factor=2, mode=upsample)
            decoder.append(
                _DecoderStage(up, double_conv(2 * features[i], features[i]), attention(f"decoder{i}", features[i]))
            )
        self.decoder = nn.ModuleList(decoder)
        self.head = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)

    @staticmethod
    def _check_attention_levels(attention_levels: Sequence[str] | str | None, depth: int) -> tuple[str, ...]:
        valid = [f"encoder{i}" for i in range(depth - 1)] + ["bottleneck"] + [f"decoder{i}" for i in range(depth - 1)]
        if attention_levels is None:
            return ("bottleneck", f"decoder{depth - 2}")
        levels = (attention_levels,) if isinstance(attention_levels, str) else tuple(attention_levels)
        unknown = [lv for lv in levels if lv not in valid]
        if unknown or len(set(levels)) != len(levels):
            raise ValueError(
                f"FocalAttentionUNet: attention_levels must be distinct names from {valid} (for {depth} levels), "
                f"got {attention_levels!r}."
            )
        return levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.size_divisible_by, "FocalAttentionUNet")
        skips: list[torch.Tensor] = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        depth = len(skips)
        for j, stage in enumerate(self.decoder):
            x = stage(x, skips[depth - 2 - j])
        return self.head(x)

    @attention_maps_method
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network in eval mode and return, per attention block, the weight each position gives to itself.

        The value at a position is the softmax weight of the window centre, in [0, 1]: near 1 the block keeps the
        position's own (value-projected) features, near ``1 / k**d`` it averages its neighbourhood uniformly, and
        below that it draws mostly on neighbours. Keys are the location names of ``attention_levels``; each map has
        shape ``(B, 1, *spatial)`` at that level's resolution (``1 / 2**i`` of the input). The module keeps nothing.
        """
        blocks: dict[str, nn.Module] = {}
        depth = len(self.features)
        for i, stage in enumerate(self.encoder):
            blocks["bottleneck" if i == depth - 1 else f"encoder{i}"] = stage[-1]
        for j, stage in enumerate(self.decoder):
            blocks[f"decoder{depth - 2 - j}"] = stage.attention
        maps: dict[str, torch.Tensor] = {}
        handles = []
        for location in self.attention_levels:
            block = blocks[location]

            def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], location: str = location) -> None:
                maps[location] = module.centre_weight(inputs[0])

            handles.append(block.register_forward_pre_hook(hook))
        try:
            self(x)
        finally:
            for handle in handles:
                handle.remove()
        return {location: maps[location] for location in self.attention_levels}
