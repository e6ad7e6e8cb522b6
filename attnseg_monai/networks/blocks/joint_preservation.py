"""Joint Preservation (JP) of DANIE (Dual Attention Encoder with Joint Preservation, ECAI 2024).

JP fuses the two streams of DANIE's dual attention encoder at one stage:

* ES (enhancing self-attentional perceptron): global channel modelling after self-attention, a squeeze-and-excitation
  gate (Hu et al., CVPR 2018) on the SAP features, supplying the channel dependencies self-attention does not model.
* EH (enhancing hierarchical-attentional perceptron): a non-local interaction on the local HAP features, the
  embedded-Gaussian non-local block of Wang et al. (CVPR 2018), with keys and values max-pooled by ``sub_sample``
  (Wang et al.'s own sub-sampling trick) so that it stays affordable on fine grids and in 3D.
* Aggregation: a convolution block on each enhanced stream, then element-wise addition.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_norm_layer
from torch import nn

from .cbam import ChannelAttention

__all__ = ["NonLocalBlock", "JointPreservation"]


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block ``z = x + W softmax(theta(x)^T phi(x)) g(x)``.

    ``theta``, ``phi`` and ``g`` are 1x1(x1) convolutions to ``inter_channels``; ``phi`` and ``g`` are max-pooled by
    ``sub_sample`` so each position attends to ``N / sub_sample**spatial_dims`` pooled positions. ``W`` is a 1x1
    convolution back to ``channels`` followed by normalisation.

    Args:
        spatial_dims: 2 or 3.
        channels: input and output channels.
        inter_channels: embedding width (default ``max(channels // 2, 1)``).
        sub_sample: pooling factor of keys and values; every spatial size of the input must be a multiple of it.
        norm: normalisation after ``W`` (MONAI spec, or ``None``).

    Returns (forward): a tensor shaped like the input.

    Raises:
        ValueError: if ``sub_sample < 1`` or ``inter_channels < 1``.

    Example::

        >>> import torch
        >>> tuple(NonLocalBlock(2, 32, sub_sample=2)(torch.randn(2, 32, 16, 16)).shape)
        (2, 32, 16, 16)
        >>> tuple(NonLocalBlock(3, 32, sub_sample=2)(torch.randn(2, 32, 8, 8, 8)).shape)
        (2, 32, 8, 8, 8)
    """

    __constants__ = ["pool_kv"]

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        inter_channels: int | None = None,
        sub_sample: int = 1,
        norm: str | tuple | None = "batch",
    ) -> None:
        super().__init__()
        inter = max(channels // 2, 1) if inter_channels is None else inter_channels
        if inter < 1:
            raise ValueError(f"inter_channels must be >= 1, got {inter_channels}.")
        if sub_sample < 1:
            raise ValueError(f"sub_sample must be >= 1, got {sub_sample}.")
        conv = Conv[Conv.CONV, spatial_dims]
        self.theta = conv(channels, inter, 1)
        self.phi = conv(channels, inter, 1)
        self.g = conv(channels, inter, 1)
        self.pool_kv = sub_sample > 1
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=sub_sample, stride=sub_sample) if self.pool_kv else None
        self.out = conv(inter, channels, 1, bias=norm is None)
        self.norm = get_norm_layer(norm, spatial_dims, channels) if norm is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.theta(x)
        key = self.phi(x)
        value = self.g(x)
        if self.pool_kv:
            key = self.pool(key)
            value = self.pool(value)
        q = query.flatten(2).transpose(1, 2)  # (B, N, C')
        k = key.flatten(2)  # (B, C', M)
        v = value.flatten(2).transpose(1, 2)  # (B, M, C')
        attn = torch.softmax(torch.matmul(q, k), dim=-1)  # (B, N, M)
        y = torch.matmul(attn, v).transpose(1, 2).reshape(query.shape)
        return x + self.norm(self.out(y))


class JointPreservation(nn.Module):
    """Fuse one stage's SAP and HAP features: ``conv(ES(s)) + conv(EH(h))``.

    ``ES(s) = s * SE(s)`` (squeeze-and-excitation channel gate on the self-attention features) and
    ``EH(h) = NonLocal(h)`` (non-local interaction on the hierarchical-attention features); each enhanced map
    passes a 3x3(x3) convolution + normalisation + activation, and the two are added.

    Args:
        spatial_dims: 2 or 3.
        channels: channels of both streams and of the fused output.
        reduction: channel reduction of the SE gate.
        sub_sample: key/value pooling of the non-local block.
        norm: normalisation spec (MONAI style).
        act: activation spec (MONAI style).

    Returns (forward): ``(fused, es_gate)`` with ``fused`` shaped like the inputs and ``es_gate`` ``(B, C, 1..)``.

    Raises:
        ValueError: on bad ``reduction`` or ``sub_sample``.

    Example::

        >>> import torch
        >>> fused, gate = JointPreservation(2, 32, sub_sample=2)(torch.randn(2, 32, 8, 8), torch.randn(2, 32, 8, 8))
        >>> tuple(fused.shape), tuple(gate.shape)
        ((2, 32, 8, 8), (2, 32, 1, 1))
        >>> fused, gate = JointPreservation(3, 32)(torch.randn(2, 32, 4, 4, 4), torch.randn(2, 32, 4, 4, 4))
        >>> tuple(fused.shape)
        (2, 32, 4, 4, 4)
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        reduction: int = 16,
        sub_sample: int = 1,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        self.es = ChannelAttention(spatial_dims, channels, reduction=reduction, pooling=("avg",))
        self.eh = NonLocalBlock(spatial_dims, channels, sub_sample=sub_sample, norm=norm)
        self.aggregate_sap = Convolution(spatial_dims, channels, channels, norm=norm, act=act, bias=norm is None)
        self.aggregate_hap = Convolution(spatial_dims, channels, channels, norm=norm, act=act, bias=norm is None)

    def forward(self, sap: torch.Tensor, hap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        es_gate = self.es(sap)
        fused = self.aggregate_sap(sap * es_gate) + self.aggregate_hap(self.eh(hap))
        return fused, es_gate
