"""The fusions DANIE's ablation compares Joint Preservation with (Dual Attention Encoder with Joint Preservation, ECAI
2024): element-wise addition and concatenation of the two streams of one stage.

The seed states that Joint Preservation outperformed "the mainstream fusion mechanisms (element-wise addition and
concatenation)"; it does not say how the concatenated channels are brought back to the stage width. Ours: a 1x1(x1)
convolution with normalisation and activation (:class:`ConcatenationFusion`), so that the decoder receives the same
width whatever the fusion. :class:`~attnseg_monai.networks.blocks.joint_preservation.JointPreservation` itself is in
``joint_preservation.py``.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["FUSIONS", "AdditionFusion", "ConcatenationFusion"]

#: the fusions of a stage's two streams: Joint Preservation (DANIE's), element-wise addition, concatenation
FUSIONS = ("joint_preservation", "add", "concat")


class AdditionFusion(nn.Module):
    """``sap + hap``: element-wise addition of the two streams (no parameters).

    Example::

        >>> import torch
        >>> tuple(AdditionFusion()(torch.ones(2, 8, 4, 4), torch.ones(2, 8, 4, 4)).shape)
        (2, 8, 4, 4)
    """

    def forward(self, sap: torch.Tensor, hap: torch.Tensor) -> torch.Tensor:
        return sap + hap


class ConcatenationFusion(nn.Module):
    """``ConvNormAct_1x1(cat[sap, hap])``: the two streams concatenated along the channels and projected back to
    ``channels`` by a 1x1(x1) convolution with normalisation and activation.

    Args:
        spatial_dims: 2 or 3.
        channels: channels of each stream and of the output.
        norm: normalisation spec of the projection (MONAI style).
        act: activation spec of the projection (MONAI style).

    Example::

        >>> import torch
        >>> tuple(ConcatenationFusion(2, 8)(torch.ones(2, 8, 4, 4), torch.ones(2, 8, 4, 4)).shape)
        (2, 8, 4, 4)
        >>> tuple(ConcatenationFusion(3, 8)(torch.ones(2, 8, 2, 2, 2), torch.ones(2, 8, 2, 2, 2)).shape)
        (2, 8, 2, 2, 2)
    """

    def __init__(
        self, spatial_dims: int, channels: int, norm: str | tuple | None = "batch", act: str | tuple = "relu"
    ) -> None:
        super().__init__()
        self.project = Convolution(
            spatial_dims, 2 * channels, channels, kernel_size=1, norm=norm, act=act, bias=norm is None
        )

    def forward(self, sap: torch.Tensor, hap: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([sap, hap], dim=1))
