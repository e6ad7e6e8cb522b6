"""UNet 3+: a U-Net whose decoder nodes are fed by full-scale skip connections.

Huang H., Lin L., Tong R., Hu H., Zhang Q., Iwamoto Y., Han X., Chen Y.-W., Wu J., "UNet 3+: A Full-Scale Connected
UNet for Medical Image Segmentation", ICASSP 2020 (arXiv:2004.08790). One of the comparison models of seed 001
(MCSA-UNet, Tab. 2, its reference [15]); see ``docs/architectures/unet3plus.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from ..blocks.conv_blocks import DoubleConv
from ..blocks.full_scale_skip import FullScaleDecoderNode, full_scale_resample
from ..registry import register_network
from ..utils import check_channels, check_five_levels, check_input_size, check_spatial_dims

__all__ = ["UNet3Plus"]


@register_network("unet3plus")
class UNet3Plus(nn.Module):
    """UNet 3+ (Huang et al., ICASSP 2020) for 2D and 3D segmentation.

    Encoder: five levels of two 3x3 convolutions (+ norm + ReLU), 2x max pooling between them, as U-Net.
    Decoder: four :class:`~attnseg_monai.networks.blocks.FullScaleDecoderNode` s. The node of level ``i`` receives
    every encoder level at or above it (the shallower ones max-pooled to its size: *inter-encoder* skips) and every
    deeper decoder node plus the bottleneck (bilinearly upsampled: *intra-decoder* skips), each brought to
    ``cat_channels`` by a 3x3 convolution; their concatenation (``5 * cat_channels``) is fused by a 3x3 convolution.
    These are the paper's **full-scale skip connections**. A 3x3 convolution of the top node gives the logits.

    Full-scale deep supervision (``deep_supervision=True``, training mode only): a 3x3 convolution head on each of
    the five decoder outputs (the bottleneck counts as the fifth), bilinearly upsampled to the input size, returned
    as ``[final, side_2, side_3, side_4, side_5]`` (final first, the form ``monai.losses.DeepSupervisionLoss`` weights).
    Eval mode always returns the final logits, a Tensor. Not built: the paper's classification-guided module (an
    image-level "is the organ present" branch on the bottleneck that zeroes the side outputs of organ-free images) and
    its hybrid focal + MS-SSIM + IoU loss, which is the bundle's choice.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes, logits).
        features: channels of the five encoder levels, shallow to deep (the paper: ``(64, 128, 256, 512, 1024)``).
        cat_channels: channels each of the five inputs of a decoder node is brought to; default ``features[0]``
            (64 in the paper, so the decoder nodes have 320 channels).
        deep_supervision: full-scale deep supervision in training mode (see above).
        act: activation spec (``"relu"`` in the paper).
        norm: normalisation spec (``"batch"`` in the paper); ``None`` for none.
        dropout: dropout probability after every 3x3 convolution (0: no dropout layers).

    Raises:
        ValueError: on invalid ``spatial_dims``, channel counts, ``features`` (not five positive integers),
            ``cat_channels`` or ``dropout``; ``forward`` raises it when a spatial size of the input is not a multiple
            of 16.

    Examples::

        >>> net = UNet3Plus(spatial_dims=2, in_channels=3, out_channels=2, features=(16, 32, 64, 128, 256))
        >>> net.eval()(torch.randn(1, 3, 128, 128)).shape
        torch.Size([1, 2, 128, 128])
        >>> net3d = UNet3Plus(3, 1, 3, features=(8, 16, 32, 64, 128), deep_supervision=True).train()
        >>> [o.shape[2:] for o in net3d(torch.randn(2, 1, 32, 32, 32))][-1]
        torch.Size([32, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        cat_channels: int | None = None,
        deep_supervision: bool = False,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_spatial_dims(spatial_dims, name)
        check_channels(name, in_channels=in_channels, out_channels=out_channels)
        features = check_five_levels(name, features)
        cat = features[0] if cat_channels is None else cat_channels
        if isinstance(cat, bool) or not isinstance(cat, int) or cat < 1:
            raise ValueError(
                f"{name}: cat_channels must be a positive integer (64 in the paper), got {cat_channels!r}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.deep_supervision = bool(deep_supervision)
        self.size_divisible_by: int = 16  # four 2x2 max-poolings

        self.encoder = nn.ModuleList(
            DoubleConv(spatial_dims, cin, cout, act=act, norm=norm, dropout=dropout)
            for cin, cout in zip((in_channels,) + features[:-1], features)
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        levels = len(features)
        up_channels = cat * levels
        # node of level i (deepest first: 3, 2, 1, 0): encoder maps 0..i, decoder maps i+1..3, the bottleneck
        self.decoder = nn.ModuleList(
            FullScaleDecoderNode(
                spatial_dims,
                level=i,
                source_channels=features[: i + 1] + (up_channels,) * (levels - 2 - i) + features[-1:],
                cat_channels=cat,
                act=act,
                norm=norm,
                dropout=dropout,
            )
            for i in range(levels - 2, -1, -1)
        )
        self.head = Conv[Conv.CONV, spatial_dims](up_channels, out_channels, kernel_size=3, padding=1)
        # full-scale deep supervision: heads of decoder levels 1..3 and of the bottleneck, upsampled to the input
        self.side_heads = nn.ModuleList()
        if self.deep_supervision:
            for level, channels in zip(range(1, levels), (up_channels,) * (levels - 2) + features[-1:]):
                self.side_heads.append(
                    nn.Sequential(
                        Conv[Conv.CONV, spatial_dims](channels, out_channels, kernel_size=3, padding=1),
                        full_scale_resample(spatial_dims, -level),
                    )
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, self.size_divisible_by, "UNet3Plus")
        encoded: list[torch.Tensor] = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x = stage(x)
            encoded.append(x)
        deeper: list[torch.Tensor] = [encoded[-1]]  # decoder maps deeper than the current node, shallowest first
        for node in self.decoder:
            d = node(encoded[: node.level + 1] + deeper)
            deeper = [d] + deeper
        final = self.head(deeper[0])
        if self.training and self.deep_supervision:
            outputs = [final]
            for k, side in enumerate(self.side_heads):
                outputs.append(side(deeper[k + 1]))
            return outputs
        return final
