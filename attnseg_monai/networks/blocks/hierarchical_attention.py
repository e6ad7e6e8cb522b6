"""Hierarchical-attentional perception (HAP) of DANIE (Dual Attention Encoder with Joint Preservation, ECAI 2024).

The HAP stream of DANIE's dual attention encoder extracts local features with convolutions, highlights them with
channel attention and spatial attention and integrates the attended features through a *dynamic calibration* (the
seed states these three parts, and that its ablation found channel-first slightly better than spatial-first and the
calibration helpful; the forms below are our readings). This module holds:

* :class:`ConvStem`: the HAP stream's embedding layer, stride-2 convolutions down to the patch grid of the SAP stream.
* :class:`DynamicCalibration`: an input-conditioned per-channel gate in [0, 1] deciding how much of the attended
  features is added back to the local features.
* :class:`HierarchicalAttentionBlock`: residual convolution unit -> channel attention -> spatial attention (or
  spatial first, ``order="spatial_first"``) -> dynamic calibration (or a plain residual sum,
  ``dynamic_calibration=False``): the seed's ablations as switches.

The channel and spatial attention maps are CBAM's (:mod:`attnseg_monai.networks.blocks.cbam`).
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer
from torch import nn

from .cbam import ChannelAttention, SpatialAttention

__all__ = ["HAP_ORDERS", "ConvStem", "DynamicCalibration", "HierarchicalAttentionBlock"]

#: the orders of the HAP attentions: channel attention first (the seed's choice), or spatial attention first
HAP_ORDERS = ("channel_first", "spatial_first")


class ConvStem(nn.Module):
    """``num_levels`` stride-2 levels of two 3x3(x3) convolutions each, returning every level's output.

    With ``num_levels=0`` the stem is one level of two stride-1 convolutions. The intermediate levels (at 1/2, 1/4,
    ... of the input) have ``hidden_channels``, the last one ``out_channels``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        hidden_channels: channels of the intermediate levels.
        out_channels: channels of the last level.
        num_levels: number of stride-2 levels (log2 of the total downsampling).
        norm: normalisation spec (MONAI style).
        act: activation spec (MONAI style).

    Returns (forward): the list of level outputs, finest first; the last is at ``1 / 2**num_levels`` of the input.

    Raises:
        ValueError: if ``num_levels`` is negative.

    Example::

        >>> import torch
        >>> [tuple(f.shape) for f in ConvStem(2, 1, 16, 32, num_levels=2)(torch.zeros(1, 1, 64, 64))]
        [(1, 16, 32, 32), (1, 32, 16, 16)]
        >>> [tuple(f.shape) for f in ConvStem(3, 1, 16, 32, num_levels=1)(torch.zeros(1, 1, 16, 16, 16))]
        [(1, 32, 8, 8, 8)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_levels: int,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if num_levels < 0:
            raise ValueError(f"num_levels must be >= 0, got {num_levels}.")
        self.levels = nn.ModuleList()
        cin = in_channels
        for level in range(max(num_levels, 1)):
            cout = out_channels if level == max(num_levels, 1) - 1 else hidden_channels
            stride = 2 if num_levels > 0 else 1
            self.levels.append(
                nn.Sequential(
                    Convolution(spatial_dims, cin, cout, strides=stride, norm=norm, act=act, bias=norm is None),
                    Convolution(spatial_dims, cout, cout, norm=norm, act=act, bias=norm is None),
                )
            )
            cin = cout

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


class DynamicCalibration(nn.Module):
    """Per-channel gate ``g = sigmoid(W2 relu(W1 [GAP(F); GAP(A)]))`` conditioned on features F and attended A.

    The HAP block adds ``g * A`` back to ``F``: the gate is computed from the current input, so how strongly the
    channel-then-spatial attention rewrites the local features is calibrated per image and per channel.

    Args:
        spatial_dims: 2 or 3.
        channels: channels C of both inputs.
        reduction: hidden width is ``max(C // reduction, 4)``.

    Returns (forward): gate ``(B, C, 1, 1[, 1])`` in [0, 1].

    Raises:
        ValueError: if ``reduction < 1``.

    Example::

        >>> import torch
        >>> tuple(DynamicCalibration(2, 32)(torch.zeros(1, 32, 8, 8), torch.zeros(1, 32, 8, 8)).shape)
        (1, 32, 1, 1)
        >>> tuple(DynamicCalibration(3, 32)(torch.zeros(1, 32, 4, 4, 4), torch.zeros(1, 32, 4, 4, 4)).shape)
        (1, 32, 1, 1, 1)
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}.")
        hidden = max(channels // reduction, 4)
        conv = Conv[Conv.CONV, spatial_dims]
        self.mlp = nn.Sequential(conv(2 * channels, hidden, 1), nn.ReLU(inplace=True), conv(hidden, channels, 1))

    def forward(self, features: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        dims = list(range(2, features.ndim))
        pooled = torch.cat([features.mean(dim=dims, keepdim=True), attended.mean(dim=dims, keepdim=True)], dim=1)
        return torch.sigmoid(self.mlp(pooled))


class HierarchicalAttentionBlock(nn.Module):
    """One HAP block: residual conv unit, channel attention THEN spatial attention, dynamic calibration.

    ``F = act(conv(conv(x)) + shortcut(x))``; ``F_c = M_c(F) * F``; ``A = M_s(F_c) * F_c``;
    ``out = F + g(F, A) * A`` with ``M_c``/``M_s`` CBAM's channel/spatial maps and ``g`` :class:`DynamicCalibration`.
    ``order="spatial_first"`` swaps the two attentions (``F_s = M_s(F) * F``; ``A = M_c(F_s) * F_s``), and
    ``dynamic_calibration=False`` adds the attended features back without a gate (``out = F + A``; the block then has
    no :class:`DynamicCalibration` and returns ``None`` as its gate).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first convolution (2 to halve the resolution between stages).
        reduction: channel reduction of the channel attention and calibration MLPs.
        spatial_kernel_size: odd kernel of the spatial attention convolution.
        norm: normalisation spec (MONAI style).
        act: activation spec (MONAI style).
        dropout: dropout inside the convolution unit.
        order: ``"channel_first"`` (default) or ``"spatial_first"``.
        dynamic_calibration: gate the attended features with :class:`DynamicCalibration` (default) or add them as
            they are.

    Returns (forward): ``(out, channel_map (B, C, 1..), spatial_map (B, 1, *spatial), calibration_gate (B, C, 1..))``;
    the gate is ``None`` without dynamic calibration.

    Raises:
        ValueError: on bad reduction, kernel size, stride or order.

    Example::

        >>> import torch
        >>> out, mc, ms, g = HierarchicalAttentionBlock(2, 16, 32, stride=2)(torch.randn(2, 16, 16, 16))
        >>> tuple(out.shape), tuple(mc.shape), tuple(ms.shape), tuple(g.shape)
        ((2, 32, 8, 8), (2, 32, 1, 1), (2, 1, 8, 8), (2, 32, 1, 1))
        >>> block = HierarchicalAttentionBlock(3, 16, 16, order="spatial_first", dynamic_calibration=False)
        >>> out, mc, ms, g = block(torch.randn(2, 16, 8, 8, 8))
        >>> tuple(out.shape), g is None
        ((2, 16, 8, 8, 8), True)
    """

    __constants__ = ["channel_first"]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
        dropout: float = 0.0,
        order: str = "channel_first",
        dynamic_calibration: bool = True,
    ) -> None:
        super().__init__()
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}.")
        if order not in HAP_ORDERS:
            raise ValueError(f"order must be one of {HAP_ORDERS}, got {order!r}.")
        drop = dropout if dropout > 0 else None
        bias = norm is None
        self.conv = nn.Sequential(
            Convolution(spatial_dims, in_channels, out_channels, strides=stride, norm=norm, act=act, bias=bias),
            Convolution(spatial_dims, out_channels, out_channels, norm=norm, act=None, dropout=drop, bias=bias),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = Convolution(
                spatial_dims, in_channels, out_channels, strides=stride, kernel_size=1, norm=norm, act=None, bias=bias
            )
        else:
            self.shortcut = nn.Identity()
        self.act = get_act_layer(act)
        self.channel_first = order == "channel_first"
        self.channel_attention = ChannelAttention(spatial_dims, out_channels, reduction=reduction)
        self.spatial_attention = SpatialAttention(spatial_dims, kernel_size=spatial_kernel_size)
        self.calibration = (
            DynamicCalibration(spatial_dims, out_channels, reduction=reduction) if dynamic_calibration else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        feat = self.act(self.conv(x) + self.shortcut(x))
        if self.channel_first:
            channel_map = self.channel_attention(feat)
            refined = feat * channel_map
            spatial_map = self.spatial_attention(refined)
            attended = refined * spatial_map
        else:
            spatial_map = self.spatial_attention(feat)
            refined = feat * spatial_map
            channel_map = self.channel_attention(refined)
            attended = refined * channel_map
        if self.calibration is not None:
            gate = self.calibration(feat, attended)
            return feat + gate * attended, channel_map, spatial_map, gate
        return feat + attended, channel_map, spatial_map, None
