"""Building blocks shared by the networks: one concept per file."""

from __future__ import annotations

from .cbam import ChannelAttention, SpatialAttention
from .conv_blocks import DoubleConv

__all__ = ["ChannelAttention", "DoubleConv", "SpatialAttention"]
