"""Han-Net: He et al., "A Hybrid-Attention Nested UNet for Nuclear Segmentation in Histopathological Images", 2021.

A nested U-Net whose decoder nodes ``X^{i,j}`` receive every earlier node of their level and the upsampled deeper
node (dense skip pathways, UNet++ style), so the top row ``X^{0,0..L}`` is a full-resolution path that is kept
through the whole decoding. Every skip is refined by a residual spatial attention ``s' = s + s * A(s)``; the
bottleneck ``X^{L,0}`` is recalibrated by a squeeze-and-excitation channel attention. Each top-row decoder node
``X^{0,1..L}`` has a 1x1 head, and a learned 1x1 convolution over the concatenated heads gives the final map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from ..blocks.cbam import ChannelAttention
from ..blocks.conv_blocks import DoubleConv
from ..blocks.hybrid_attention import NestedNode, SkipSpatialAttention
from ..registry import register_network
from ..utils import attention_maps_method, check_channels, check_input_size, check_spatial_dims

__all__ = ["HanNet"]

_UPSAMPLE_MODES = ("deconv", "nontrainable")


@register_network("hannet")
class HanNet(nn.Module):
    """Hybrid-attention nested U-Net (Han-Net) of He et al., 2021, for 2D and 3D segmentation.

    With ``L = len(features) - 1``, the encoder nodes are ``X^{i,0}`` (``i = 0..L``, two convolutions each,
    max pooling between levels) and the decoder nodes are ``X^{i,j}`` with ``j >= 1`` and ``i + j <= L``::

        X^{i,j} = H([A(X^{i,0}), ..., A(X^{i,j-1}), Up(X^{i+1,j-1})])

    where ``A(s) = s + s * SA(s)`` is the skip spatial attention (:class:`SkipSpatialAttention`, one unit per
    skip source) and ``X^{L,0}`` is multiplied by its SE channel weights before it is used. The heads
    ``Y_j = conv1x1(X^{0,j})`` are at full resolution; the output is ``conv1x1([Y_1, ..., Y_L])``, initialised to
    the mean of the heads and learned.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (logits, no final activation).
        features: feature channels per level, at least 2 entries; the default is the paper's five levels
            ``(32, 64, 128, 256, 512)``.
        act: activation spec of the convolutions.
        norm: normalisation spec of the convolutions.
        dropout: dropout probability after each convolution, in [0, 1).
        upsample: ``"deconv"`` (2x2 transposed convolution) or ``"nontrainable"`` (1x1 convolution and linear
            interpolation) for the ``Up`` of every decoder node.
        channel_reduction: reduction ratio of the SE channel attention's MLP at the bottleneck.
        spatial_kernel_size: odd kernel size of the skip spatial attention's convolution.
        deep_supervision: in training mode return ``[fused, Y_1, ..., Y_L]`` (all at input size) instead of the
            fused map alone.

    Raises:
        ValueError: on a ``spatial_dims`` other than 2 or 3, non-positive channel counts, fewer than 2
            ``features`` or a non-positive one, ``dropout`` outside [0, 1), an unknown ``upsample``, a
            ``channel_reduction`` below 1 or an even ``spatial_kernel_size``; in ``forward``, on a spatial size
            that is not a multiple of ``size_divisible_by = 2 ** (len(features) - 1)``.

    Examples::

        >>> net = HanNet(2, 3, 2)  # the paper's five levels: inputs must be multiples of 16
        >>> net.eval()(torch.randn(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
        >>> net3d = HanNet(3, 1, 3, features=(8, 16, 32, 64), deep_supervision=True)
        >>> [o.shape[1:] for o in net3d.train()(torch.randn(2, 1, 32, 32, 32))][:2]
        [torch.Size([3, 32, 32, 32]), torch.Size([3, 32, 32, 32])]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (32, 64, 128, 256, 512),
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        upsample: str = "deconv",
        channel_reduction: int = 16,
        spatial_kernel_size: int = 7,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "HanNet")
        check_channels("HanNet", in_channels=in_channels, out_channels=out_channels)
        features = tuple(features)
        if len(features) < 2 or any(not isinstance(f, int) or f < 1 for f in features):
            raise ValueError(
                f"HanNet: features must list at least 2 positive integers (one per level), got {features}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"HanNet: dropout must be in [0, 1), got {dropout}.")
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(f"HanNet: upsample must be one of {_UPSAMPLE_MODES}, got {upsample!r}.")
        if not isinstance(channel_reduction, int) or channel_reduction < 1:
            raise ValueError(f"HanNet: channel_reduction must be an integer >= 1, got {channel_reduction!r}.")
        if not isinstance(spatial_kernel_size, int) or spatial_kernel_size < 1 or spatial_kernel_size % 2 == 0:
            raise ValueError(
                f"HanNet: spatial_kernel_size must be a positive odd integer, got {spatial_kernel_size!r}."
            )

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.depth = len(features) - 1  # L: number of poolings, and of top-row decoder nodes
        self.deep_supervision = deep_supervision
        self.size_divisible_by: int = 2**self.depth
        depth = self.depth

        # Encoder X^{i,0}, i = 0..L, and the SE channel attention on the bottleneck X^{L,0}.
        self.encoder = nn.ModuleList(
            DoubleConv(spatial_dims, in_channels if i == 0 else features[i - 1], features[i], act, norm, dropout)
            for i in range(depth + 1)
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.channel_attention = ChannelAttention(
            spatial_dims, features[depth], reduction=channel_reduction, pooling=("avg",)
        )
        # skip_attention[j][i] refines X^{i,j} (every node with i + j < L feeds later nodes of its level).
        self.skip_attention = nn.ModuleList(
            nn.ModuleList(SkipSpatialAttention(spatial_dims, spatial_kernel_size) for _ in range(depth - j))
            for j in range(depth)
        )
        # decoder[j - 1][i] is X^{i,j}: j same-level inputs plus the upsampled X^{i+1,j-1}.
        self.decoder = nn.ModuleList(
            nn.ModuleList(
                NestedNode(spatial_dims, j, features[i], features[i + 1], act, norm, dropout, upsample)
                for i in range(depth - j + 1)
            )
            for j in range(1, depth + 1)
        )
        # One 1x1 head per top-row decoder node X^{0,1..L} and the learned fusion of the heads.
        conv = Conv[Conv.CONV, spatial_dims]
        self.heads = nn.ModuleList(conv(features[0], out_channels, 1) for _ in range(depth))
        self.fusion = conv(depth * out_channels, out_channels, 1)
        with torch.no_grad():  # start as the mean of the heads, class by class; training moves it from there
            self.fusion.weight.zero_()
            self.fusion.bias.zero_()
            for k in range(depth):
                for c in range(out_channels):
                    self.fusion.weight[(c, k * out_channels + c) + (0,) * spatial_dims] = 1.0 / depth

    def _nested(self, x: torch.Tensor, collect: bool) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Top-row decoder nodes ``X^{0,1..L}`` and, when ``collect``, the attention maps by location name."""
        maps: dict[str, torch.Tensor] = {}
        column: list[torch.Tensor] = []  # the previous column X^{., j-1}, unrefined
        h = x
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = self.pool(h)
            h = stage(h)
            column.append(h)
        weights = self.channel_attention(column[-1])
        column[-1] = column[-1] * weights
        if collect:
            maps["bottleneck_channel"] = weights
        skips: list[list[torch.Tensor]] = [[] for _ in range(self.depth)]  # refined A(X^{i,0..j-1}) per level
        top: list[torch.Tensor] = []
        for j, (attention_column, node_column) in enumerate(zip(self.skip_attention, self.decoder)):
            for i, unit in enumerate(attention_column):
                refined, amap = unit(column[i])
                skips[i].append(refined)
                if collect:
                    maps["skip_" + str(i) + "_" + str(j)] = amap
            next_column: list[torch.Tensor] = []
            for i, node in enumerate(node_column):
                next_column.append(node(skips[i], column[i + 1]))
            column = next_column
            top.append(column[0])
        return top, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, self.size_divisible_by, "HanNet")
        top, _ = self._nested(x, False)
        heads: list[torch.Tensor] = []
        for k, head in enumerate(self.heads):
            heads.append(head(top[k]))
        fused = self.fusion(torch.cat(heads, dim=1))
        if self.training and self.deep_supervision:
            return [fused] + heads
        return fused

    @attention_maps_method
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attention maps of one eval-mode pass, without gradients.

        Returns:
            ``"skip_{i}_{j}"``: the spatial map ``SA(X^{i,j})`` in [0, 1], shape ``(B, 1, *spatial_i)`` with
            ``spatial_i = input size / 2**i``, for every skip source (``i + j < L``);
            ``"bottleneck_channel"``: the SE channel weights of ``X^{L,0}``, shape ``(B, features[-1], 1, ...)``.

        Raises:
            ValueError: on an input size that is not a multiple of ``size_divisible_by``.
        """
        return self._nested(x, True)[1]
