"""Additive grid attention gate of Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for the
Pancreas", MIDL 2018, arXiv:1804.03999).

The gate weighs the skip features ``x`` of one U-Net level with coefficients computed from ``x`` and a *grid*
gating signal ``g`` taken from the next coarser level (a feature map, not a global vector)::

    q_att = psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi        (additive attention, paper eq. 1)
    alpha = sigmoid(q_att)                                     (paper eq. 2)
    x_hat = alpha * x,  output = W(x_hat)                      (W: 1x1 convolution + normalisation)

``W_x`` is a strided convolution (kernel = stride = ``sub_sample_factor``) that brings ``x`` onto the gating grid,
``alpha`` is resampled back onto ``x``'s grid by (bi/tri)linear interpolation, as in the authors' released code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = ["GridAttentionGate"]


class GridAttentionGate(nn.Module):
    """Additive attention gate with a grid gating signal (Attention U-Net, Oktay et al. 2018).

    ``forward(x, g)`` returns ``(output, alpha)``: ``alpha`` of shape ``(B, heads, *x.shape[2:])`` in [0, 1] and,
    for ``heads == 1``, ``output = W(alpha * x)`` where ``W`` is a 1x1 convolution followed by ``norm`` (the output
    transform of the authors' code). With ``heads > 1`` the gate runs ``heads`` independent gates on the same
    inputs (the authors' ``MultiAttentionBlock``): each head has its own ``W_x``, ``W_g``, ``psi`` and ``W``
    (implemented as grouped convolutions), and their outputs are merged by a 1x1 convolution + ``norm`` + ``act``
    back to ``in_channels``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels ``F_l`` of the skip features ``x``.
        gating_channels: channels ``F_g`` of the gating signal ``g``.
        inter_channels: width ``F_int`` of the joint space; default ``in_channels`` (as in the authors' CT model).
        sub_sample_factor: kernel size and stride of ``W_x``; ``g`` is expected on the grid of ``x`` divided by this
            factor (otherwise ``W_g g`` is resampled onto that grid). 1 keeps ``x``'s grid.
        heads: number of parallel gates.
        norm: normalisation spec after the output convolution(s), e.g. ``"batch"``, ``"instance"`` or ``None``.
        act: activation spec of the head-merging convolution (used only when ``heads > 1``).

    Raises:
        ValueError: if a channel count, ``sub_sample_factor`` or ``heads`` is not a positive integer, or
            ``spatial_dims`` is not 2 or 3.

    Example::

        >>> gate = GridAttentionGate(2, in_channels=32, gating_channels=64)
        >>> y, alpha = gate(torch.randn(1, 32, 64, 64), torch.randn(1, 64, 32, 32))
        >>> y.shape, alpha.shape
        (torch.Size([1, 32, 64, 64]), torch.Size([1, 1, 64, 64]))
        >>> gate3d = GridAttentionGate(3, in_channels=16, gating_channels=32, heads=2)
        >>> y, alpha = gate3d(torch.randn(1, 16, 32, 32, 32), torch.randn(1, 32, 16, 16, 16))
        >>> y.shape, alpha.shape
        (torch.Size([1, 16, 32, 32, 32]), torch.Size([1, 2, 32, 32, 32]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        sub_sample_factor: int = 2,
        heads: int = 1,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"GridAttentionGate: spatial_dims must be 2 or 3, got {spatial_dims}.")
        inter = in_channels if inter_channels is None else inter_channels
        for key, value in {
            "in_channels": in_channels,
            "gating_channels": gating_channels,
            "inter_channels": inter,
            "sub_sample_factor": sub_sample_factor,
            "heads": heads,
        }.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GridAttentionGate: {key} must be a positive integer, got {value!r}.")
        conv = Conv[Conv.CONV, spatial_dims]
        self.heads = heads
        self.sub_sample_factor = sub_sample_factor
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        # W_x: no bias (the bias b_g of eq. 1 sits in W_g); kernel = stride brings x onto the gating grid.
        self.theta = conv(in_channels, heads * inter, sub_sample_factor, stride=sub_sample_factor, bias=False)
        self.phi = conv(gating_channels, heads * inter, 1, bias=True)
        self.psi = conv(heads * inter, heads, 1, groups=heads, bias=True)
        # Output transform W (1x1 conv + norm), one per head.
        self.output = Convolution(
            spatial_dims,
            heads * in_channels,
            heads * in_channels,
            kernel_size=1,
            groups=heads,
            act=None,
            norm=norm,
            bias=norm is None,
        )
        self.combine: nn.Module | None = None
        if heads > 1:
            self.combine = Convolution(
                spatial_dims, heads * in_channels, in_channels, kernel_size=1, act=act, norm=norm, bias=norm is None
            )

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``alpha`` (B, heads, *x.shape[2:]) in [0, 1], resampled onto ``x``'s grid."""
        theta_x = self.theta(x)
        phi_g = self.phi(g)
        # The network feeds g on theta_x's grid already; resample only if it does not (always while tracing, so an
        # exported graph stays correct for any size instead of freezing a shape comparison).
        if torch.jit.is_tracing() or phi_g.shape[2:] != theta_x.shape[2:]:
            phi_g = F.interpolate(phi_g, size=theta_x.shape[2:], mode=self.mode, align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta_x + phi_g)))
        if self.sub_sample_factor > 1:
            alpha = F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)
        return alpha

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.coefficients(x, g)
        if self.heads == 1:
            x_hat = alpha * x
        else:  # (B, heads, 1, *S) * (B, 1, C, *S) -> (B, heads * C, *S), head-major as the grouped convs expect
            x_hat = (alpha.unsqueeze(2) * x.unsqueeze(1)).flatten(1, 2)
        y = self.output(x_hat)
        if self.combine is not None:
            y = self.combine(y)
        return y, alpha
