"""Neighbourhood (local-window) attention: the "Attention Block" of the focal/attention U-Net seed (002).

The seed describes an attention mechanism in which two fully connected layers compute, for every pixel, its
similarity to the pixels around it; a softmax turns the similarities into an attention distribution over the
neighbourhood; an interaction module then weights the features with that distribution and merges the result with
the input. Here the two per-pixel fully connected layers are 1x1 convolutions (query and key projections), the
neighbourhood is a ``k x k`` (2D) or ``k x k x k`` (3D) window centred on the pixel, and the interaction module is a
1x1 convolution plus normalisation on the attended features, added to the input (a residual merge)::

    q = W_q x,  k = W_k x,  v = W_v x                          (1x1 convolutions)
    s_ij = <q_i, k_j> / sqrt(C_qk)          for j in N(i)      (N(i): the window around i, inside the image)
    a_ij = exp(s_ij) / sum_{j' in N(i)} exp(s_ij')              (softmax over the window)
    A_i  = sum_{j in N(i)} a_ij v_j                             (attended features)
    y    = x + Norm(W_o A)                                      (interaction module, residual merge)

Window positions that fall outside the image are left out of the softmax (their logits are set to ``-inf``), so the
weights of every position sum to 1 over its valid neighbours. The window is gathered with one constant padding and
``k**d`` shifted views (``torch.narrow``) of the padded keys and values; logits and the weighted sum are accumulated
one offset at a time, so memory grows with ``k**d * voxels`` (the weights), not with ``k**d * C * voxels``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer
from torch import nn

__all__ = ["NeighbourhoodAttention", "check_kernel_size"]


def check_kernel_size(
    kernel_size: int | Sequence[int], spatial_dims: int, name: str = "kernel_size"
) -> tuple[int, ...]:
    """Return ``kernel_size`` as a tuple of ``spatial_dims`` odd positive ints with at least one entry above 1.

    Raises:
        ValueError: if an entry is not an odd positive integer, the length is not ``spatial_dims``, or every entry
            is 1 (a 1-pixel window makes the attention an identity).
    """
    if isinstance(kernel_size, int):
        sizes: tuple = (kernel_size,) * spatial_dims
    elif isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        sizes = tuple(kernel_size)
    else:
        sizes = ()
    if len(sizes) != spatial_dims or any(isinstance(k, bool) or not isinstance(k, int) for k in sizes):
        raise ValueError(
            f"{name} must be an odd int or a sequence of {spatial_dims} odd ints (e.g. 7 or (5, 5, 3)), "
            f"got {kernel_size!r}."
        )
    if any(k < 1 or k % 2 == 0 for k in sizes) or max(sizes) == 1:
        raise ValueError(
            f"{name} entries must be odd positive integers (the window is centred on the pixel) and at least one "
            f"must exceed 1, got {kernel_size!r}; use e.g. 3, 5 or 7."
        )
    return sizes


class NeighbourhoodAttention(nn.Module):
    """Softmax attention of every pixel/voxel over its ``k x k (x k)`` neighbourhood, with a residual interaction.

    The "Attention Block" of the focal/attention U-Net seed (Zen and the Art of Computer Programming, blog summary
    "architecture design for medical image segmentation": U-Net + focal loss + attention block + dilation/CRF on
    NIH chest X-rays). See the module docstring for the equations.

    Args:
        spatial_dims: 2 or 3.
        channels: feature channels C of input and output.
        kernel_size: odd window size, an int or one per spatial dimension (e.g. ``(5, 5, 3)``).
        reduction: the query/key width is ``max(C // reduction, 1)`` (the value keeps C channels).
        norm: normalisation of the interaction module, a MONAI spec such as ``"batch"`` or ``None``.

    Returns (forward): ``x + Norm(W_o A)``, the same shape as the input ``(B, C, *spatial)``.

    Raises:
        ValueError: on a bad ``spatial_dims``, ``channels``, ``kernel_size`` or ``reduction``.

    Examples::

        >>> block = NeighbourhoodAttention(2, channels=32, kernel_size=7)
        >>> block(torch.randn(2, 32, 16, 16)).shape
        torch.Size([2, 32, 16, 16])
        >>> block3d = NeighbourhoodAttention(3, channels=16, kernel_size=(5, 5, 3))
        >>> block3d(torch.randn(1, 16, 8, 8, 4)).shape
        torch.Size([1, 16, 8, 8, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        kernel_size: int | Sequence[int] = 7,
        reduction: int = 8,
        norm: str | tuple | None = "batch",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"NeighbourhoodAttention: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"NeighbourhoodAttention: channels must be a positive integer, got {channels!r}.")
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"NeighbourhoodAttention: reduction must be a positive integer, got {reduction!r}.")
        self.spatial_dims = spatial_dims
        self.kernel_size = check_kernel_size(kernel_size, spatial_dims)
        qk_channels = max(channels // reduction, 1)
        self.scale = 1.0 / math.sqrt(qk_channels)
        conv = Conv[Conv.CONV, spatial_dims]
        self.query = conv(channels, qk_channels, kernel_size=1)
        self.key = conv(channels, qk_channels, kernel_size=1)
        self.value = conv(channels, channels, kernel_size=1)
        self.interaction = conv(channels, channels, kernel_size=1, bias=norm is None)
        self.interaction_norm = (
            get_norm_layer(norm, spatial_dims=spatial_dims, channels=channels) if norm is not None else nn.Identity()
        )
        # Window offsets in row-major order; the centre (offset == radius in every dimension) is the middle entry.
        self.offsets: list[list[int]] = [list(o) for o in itertools.product(*(range(k) for k in self.kernel_size))]
        self.centre_index = len(self.offsets) // 2
        # F.pad takes (last_lo, last_hi, ..., first_lo, first_hi).
        self.padding: list[int] = [r for k in reversed(self.kernel_size) for r in (k // 2, k // 2)]

    def _shifted(self, padded: torch.Tensor, offset: list[int], size: list[int]) -> torch.Tensor:
        """The view of ``padded`` whose position ``i`` holds the neighbour ``i + offset - radius`` of the input."""
        out = padded
        for d in range(len(offset)):
            out = out.narrow(2 + d, offset[d], size[d])
        return out

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, k**d, *spatial)``: softmax over the window (row-major offsets), invalid ones 0."""
        size = list(x.shape[2:])
        q = self.query(x)
        k = F.pad(self.key(x), self.padding)
        valid = F.pad(torch.ones([1, 1] + size, dtype=x.dtype, device=x.device), self.padding)
        logits = []
        masks = []
        for offset in self.offsets:
            logits.append((q * self._shifted(k, offset, size)).sum(dim=1, keepdim=True))
            masks.append(self._shifted(valid, offset, size))
        scores = torch.cat(logits, dim=1) * self.scale
        inside = torch.cat(masks, dim=1) > 0.5
        scores = scores.masked_fill(~inside, float("-inf"))
        return torch.softmax(scores, dim=1)

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the attended features ``A`` ``(B, C, *spatial)`` and the weights ``(B, k**d, *spatial)``."""
        size = list(x.shape[2:])
        attn = self.weights(x)
        v = F.pad(self.value(x), self.padding)
        out = torch.zeros_like(x)
        for i, offset in enumerate(self.offsets):
            out = out + attn.narrow(1, i, 1) * self._shifted(v, offset, size)
        return out, attn

    def centre_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight each position gives to itself, ``(B, 1, *spatial)`` in [0, 1] (1: it ignores its neighbours)."""
        return self.weights(x).narrow(1, self.centre_index, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attend(x)
        return x + self.interaction_norm(self.interaction(attended))
