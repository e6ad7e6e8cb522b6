"""Channel and spatial attention maps in the style of CBAM (Woo et al., ECCV 2018) and SE (Hu et al., CVPR 2018).

Both modules return the *attention map* (values in [0, 1]); callers multiply it into the features. Keeping the map
separate lets networks expose it for inspection and lets each paper compose the pieces as it describes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = ["ChannelAttention", "SpatialAttention"]

_POOLINGS = ("avg", "max")


class ChannelAttention(nn.Module):
    """Channel attention ``M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))`` with one shared MLP.

    With ``pooling=("avg",)`` this is the squeeze-and-excitation gate of SENet.

    Args:
        spatial_dims: 2 or 3.
        channels: feature channels C.
        reduction: the MLP's hidden width is ``max(C // reduction, min_hidden)``.
        pooling: global poolings whose MLP outputs are summed, any of ``"avg"`` and ``"max"``.
        min_hidden: lower bound of the hidden width.

    Returns (forward): weights of shape ``(B, C, 1, 1[, 1])``.

    Raises:
        ValueError: on an unknown pooling, an empty pooling list or a non-positive reduction.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        reduction: int = 16,
        pooling: Sequence[str] = ("avg", "max"),
        min_hidden: int = 4,
    ) -> None:
        super().__init__()
        pooling = tuple(pooling)
        if not pooling or any(p not in _POOLINGS for p in pooling):
            raise ValueError(f"pooling must be a non-empty subset of {_POOLINGS}, got {pooling}.")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}.")
        hidden = max(channels // reduction, min_hidden)
        conv = Conv[Conv.CONV, spatial_dims]
        # 1x1 convolutions act as the shared MLP on the pooled (B, C, 1, ...) descriptors.
        self.mlp = nn.Sequential(conv(channels, hidden, 1), nn.ReLU(inplace=True), conv(hidden, channels, 1))
        self.use_avg = "avg" in pooling
        self.use_max = "max" in pooling
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = list(range(2, x.ndim))
        logits = torch.zeros((x.shape[0], x.shape[1]) + (1,) * (x.ndim - 2), dtype=x.dtype, device=x.device)
        if self.use_avg:
            logits = logits + self.mlp(x.mean(dim=dims, keepdim=True))
        if self.use_max:
            logits = logits + self.mlp(x.amax(dim=dims, keepdim=True))
        return torch.sigmoid(logits)


class SpatialAttention(nn.Module):
    """Spatial attention ``M_s(F) = sigmoid(f_kxk([AvgPool_c(F); MaxPool_c(F)]))`` over channel-pooled maps.

    Args:
        spatial_dims: 2 or 3.
        kernel_size: odd size of the convolution (7 in CBAM and MCSA-UNet).

    Returns (forward): a map of shape ``(B, 1, *spatial)``.

    Raises:
        ValueError: if ``kernel_size`` is even or smaller than 1.
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}.")
        self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))
