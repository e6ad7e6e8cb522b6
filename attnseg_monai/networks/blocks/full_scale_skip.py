"""UNet 3+'s full-scale skip connections: a decoder node fed by every encoder level and every deeper decoder node.

Huang H., Lin L., Tong R., Hu H., Zhang Q., Iwamoto Y., Han X., Chen Y.-W., Wu J., "UNet 3+: A Full-Scale Connected
UNet for Medical Image Segmentation", ICASSP 2020 (arXiv:2004.08790), Sec. 2.1 and Fig. 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

__all__ = ["FullScaleDecoderNode", "full_scale_resample"]


def full_scale_resample(spatial_dims: int, levels: int) -> nn.Module:
    """What brings a feature map ``levels`` levels away to the node's resolution: ``levels > 0`` (a shallower, larger
    map) max pooling by ``2**levels``; ``levels < 0`` (a deeper map) (bi/tri)linear upsampling by ``2**-levels``;
    ``0`` nothing. As UNet 3+: non-overlapping max pooling down, linear interpolation up, no learned resampling."""
    if levels > 0:
        return Pool[Pool.MAX, spatial_dims](kernel_size=2**levels, stride=2**levels)
    if levels < 0:
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        return nn.Upsample(scale_factor=float(2**-levels), mode=mode, align_corners=False)
    return nn.Identity()


class FullScaleDecoderNode(nn.Module):
    """A UNet 3+ decoder node ``X_De^i`` with its full-scale skip connections (Huang et al. 2020, eq. 1).

    With ``N`` levels, the node of level ``i`` (1 shallowest) receives ``N`` feature maps:

    - **inter-encoder** (shallower) skips: the encoder maps ``X_En^1 ... X_En^{i-1}``, each max-pooled by
      ``2**(i-k)`` to the node's resolution (fine-grained detail);
    - the **same-level** encoder map ``X_En^i`` (the plain U-Net skip);
    - **intra-decoder** (deeper) skips: the decoder maps ``X_De^{i+1} ... X_De^{N-1}`` and the deepest encoder map
      ``X_En^N`` (which is ``X_De^N``), each upsampled by ``2**(k-i)`` (coarse-grained semantics).

    Each input is resampled (:func:`full_scale_resample`) and brought to ``cat_channels`` features by a 3x3
    convolution + norm + activation; the ``N`` results are concatenated (``N * cat_channels``, the paper's
    ``UpChannels`` = 5 x 64 = 320) and fused by one more 3x3 convolution + norm + activation. UNet++ (nested, dense
    skips on the same level) and U-Net (same-level skip only) see a subset of these scales; this node sees them all.

    Args:
        spatial_dims: 2 or 3.
        level: the node's level ``i`` (0-based here: 0 is the shallowest; ``0 <= level < len(source_channels) - 1``).
        source_channels: channels of the ``N`` inputs in level order, shallowest first: the encoder maps of levels
            ``0..level``, then the decoder maps of levels ``level+1..N-2``, then the deepest encoder map.
        cat_channels: features each input is brought to (64 in the paper: the first encoder width).
        act: activation spec of the convolutions (``"relu"`` in the paper).
        norm: normalisation spec (``"batch"`` in the paper).
        dropout: dropout probability after each convolution.

    Raises:
        ValueError: for fewer than two inputs, a ``level`` outside ``0..N-2`` or a non-positive ``cat_channels``.

    Examples::

        >>> node = FullScaleDecoderNode(2, level=1, source_channels=(4, 8, 20, 20, 32), cat_channels=4)
        >>> sizes = (64, 32, 16, 8, 4)  # inputs at the resolutions of levels 0..4
        >>> node([torch.randn(1, c, s, s) for c, s in zip((4, 8, 20, 20, 32), sizes)]).shape
        torch.Size([1, 20, 32, 32])
        >>> node3d = FullScaleDecoderNode(3, level=0, source_channels=(4, 12), cat_channels=6)
        >>> node3d([torch.randn(1, 4, 8, 8, 8), torch.randn(1, 12, 4, 4, 4)]).shape
        torch.Size([1, 12, 8, 8, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        level: int,
        source_channels: Sequence[int],
        cat_channels: int,
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        source_channels = tuple(source_channels)
        if len(source_channels) < 2:
            raise ValueError(f"FullScaleDecoderNode: needs at least two levels of inputs, got {source_channels}.")
        if not 0 <= level < len(source_channels) - 1:
            raise ValueError(
                f"FullScaleDecoderNode: level must be in 0..{len(source_channels) - 2} (the deepest level has no "
                f"decoder node), got {level}."
            )
        if not isinstance(cat_channels, int) or cat_channels < 1:
            raise ValueError(f"FullScaleDecoderNode: cat_channels must be a positive integer, got {cat_channels!r}.")
        self.level = level
        self.out_channels = cat_channels * len(source_channels)

        def conv(cin: int, cout: int) -> Convolution:
            return Convolution(
                spatial_dims,
                cin,
                cout,
                kernel_size=3,
                act=act,
                norm=norm,
                dropout=dropout if dropout > 0 else None,
                bias=norm is None,
            )

        self.paths = nn.ModuleList(
            nn.Sequential(full_scale_resample(spatial_dims, level - k), conv(c, cat_channels))
            for k, c in enumerate(source_channels)
        )
        self.fuse = conv(self.out_channels, self.out_channels)

    def forward(self, sources: list[torch.Tensor]) -> torch.Tensor:
        """``sources``: the ``N`` inputs in level order (see ``source_channels``)."""
        parts: list[torch.Tensor] = []
        for k, path in enumerate(self.paths):
            parts.append(path(sources[k]))
        return self.fuse(torch.cat(parts, dim=1))
