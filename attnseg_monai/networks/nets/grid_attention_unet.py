"""Attention U-Net with additive grid attention gates and fused deep supervision.

Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018, arXiv:1804.03999; the layout
follows the authors' CT model (``unet_CT_multi_att_dsv_3D``): max-pool U-Net, a gating signal from the bottleneck,
grid attention gates on every skip but the top one, and per-level deep-supervision heads fused by a 1x1 convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from ..blocks.conv_blocks import DoubleConv
from ..blocks.grid_attention import GridAttentionGate
from ..registry import register_network
from ..utils import attention_maps_method, check_channels, check_input_size, check_spatial_dims

__all__ = ["GridAttentionUNet"]


class _Ungated(nn.Module):
    """Stand-in for a level without a gate: passes the skip features through and reports no coefficients."""

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return x, None


@register_network("gridattentionunet")
class GridAttentionUNet(nn.Module):
    """Attention U-Net (Oktay et al. 2018) with grid attention gates on the skip connections.

    Encoder: ``DoubleConv`` units with ``features[i]`` channels and 2x max-pooling; ``features[-1]`` is the
    bottleneck. A gating signal ``g = act(norm(conv1x1(bottleneck)))`` gates the deepest skip; every shallower gated
    skip is gated by the decoder output of the level just below it, so each gate's query is a grid one resolution
    coarser than its skip (its ``W_x`` has stride 2 to meet it). Decoder levels upsample the coarser map
    (bi/trilinear), concatenate it after the gated skip and apply a ``DoubleConv``. Each decoder level has a 1x1
    deep-supervision head whose logits are upsampled to the input size; a 1x1 convolution over their concatenation
    gives the final output (the authors' fused deep supervision).

    Eval mode returns the fused logits ``(B, out_channels, *spatial)``. With ``deep_supervision=True``, training mode
    returns ``[final, dsv_0, dsv_1, ...]`` (all at the input size, ``dsv_0`` from the top decoder level), the form
    ``monai.losses.DeepSupervisionLoss`` takes.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes).
        features: channels per level, top first, the last one the bottleneck (at least 2 entries). The default is
            the authors' CT model (64, 128, 256, 512, 1024) divided by their ``feature_scale=4``.
        attention_levels: skip levels that get a gate, 0 being the full-resolution one and ``len(features) - 2`` the
            deepest; ``None`` gates all but level 0 (as the authors do). An empty sequence gives a plain U-Net with
            fused deep supervision.
        attention_heads: parallel gates per gated level (1 as in the paper's equations; 2 is the authors'
            ``unet_CT_multi_att_dsv`` "multi" model, whose head outputs are merged by 1x1 conv + norm + act).
        deep_supervision: return the per-level logits as well in training mode (see above). The fused output is
            built in any case; the authors train on it alone, which is ``False``.
        norm: normalisation spec for the convolution units, the gating signal and the gates' output transform.
        act: activation spec for the convolution units and the gating signal.
        dropout: dropout probability inside the convolution units.

    Raises:
        ValueError: on bad ``spatial_dims``, channel counts, ``features``, ``attention_levels``, ``attention_heads`` or
            ``dropout``; in ``forward``, if a spatial size is not a multiple of ``size_divisible_by``.

    Example::

        >>> net = GridAttentionUNet(2, in_channels=1, out_channels=2).eval()
        >>> net(torch.randn(1, 1, 128, 128)).shape
        torch.Size([1, 2, 128, 128])
        >>> {k: v.shape for k, v in net.attention_maps(torch.randn(1, 1, 128, 128)).items()}["level1"]
        torch.Size([1, 1, 64, 64])
        >>> net3d = GridAttentionUNet(3, 1, 3, features=(8, 16, 32, 64), deep_supervision=True).train()
        >>> [o.shape[2:] for o in net3d(torch.randn(2, 1, 32, 32, 32))][:2]
        [torch.Size([32, 32, 32]), torch.Size([32, 32, 32])]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        attention_levels: Sequence[int] | None = None,
        attention_heads: int = 1,
        deep_supervision: bool = False,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        name = "GridAttentionUNet"
        check_spatial_dims(spatial_dims, name)
        check_channels(name, in_channels=in_channels, out_channels=out_channels)
        features = tuple(features)
        if len(features) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in features):
            raise ValueError(f"{name}: features must be 2 or more positive integers (top level first), got {features}.")
        n_skips = len(features) - 1
        levels = tuple(range(1, n_skips)) if attention_levels is None else attention_levels
        levels = tuple(levels) if isinstance(levels, Sequence) and not isinstance(levels, str) else (None,)
        valid = range(n_skips)
        if len(set(levels)) != len(levels) or any(type(i) is not int or i not in valid for i in levels):
            raise ValueError(
                f"{name}: attention_levels must be distinct skip levels in 0..{n_skips - 1} (0 = full resolution, "
                f"{n_skips - 1} = deepest) for {len(features)} features, got {attention_levels!r}."
            )
        if isinstance(attention_heads, bool) or not isinstance(attention_heads, int) or attention_heads < 1:
            raise ValueError(f"{name}: attention_heads must be a positive integer, got {attention_heads!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.attention_levels = tuple(sorted(levels))
        self.deep_supervision = bool(deep_supervision)
        self.size_divisible_by: int = 2**n_skips
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"

        def unit(cin: int, cout: int) -> DoubleConv:
            return DoubleConv(spatial_dims, cin, cout, act=act, norm=norm, dropout=dropout)

        conv = Conv[Conv.CONV, spatial_dims]
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.encoder = nn.ModuleList([unit(c_in, c) for c_in, c in zip((in_channels,) + features[:-2], features[:-1])])
        self.bottleneck = unit(features[-2], features[-1])
        # Gating signal from the coarsest features (1x1 conv + norm + act); only the deepest gate reads it.
        self.gating: nn.Module = nn.Identity()
        if n_skips - 1 in self.attention_levels:
            self.gating = Convolution(
                spatial_dims, features[-1], features[-1], kernel_size=1, act=act, norm=norm, bias=norm is None
            )
        # Decoder modules, deepest level first (the order of the forward pass).
        order = range(n_skips - 1, -1, -1)
        self.gates = nn.ModuleList(
            [
                GridAttentionGate(
                    spatial_dims, features[i], features[i + 1], sub_sample_factor=2, heads=attention_heads, norm=norm
                )
                if i in self.attention_levels
                else _Ungated()
                for i in order
            ]
        )
        self.decoder = nn.ModuleList([unit(features[i] + features[i + 1], features[i]) for i in order])
        self.dsv_heads = nn.ModuleList([conv(features[i], out_channels, 1) for i in order])
        self.fuse = conv(n_skips * out_channels, out_channels, 1)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor | None]]:
        """Fused logits, per-level logits (top level first) and coefficients (deepest level first, None if ungated)."""
        skips: list[torch.Tensor] = []
        h = x
        for enc in self.encoder:
            h = enc(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)
        gating = self.gating(h)
        size = x.shape[2:]
        dsv: list[torch.Tensor] = []
        alphas: list[torch.Tensor | None] = []
        n = len(skips)
        for k, (gate, dec, head) in enumerate(zip(self.gates, self.decoder, self.dsv_heads)):
            skip = skips[n - 1 - k]
            gated, alpha = gate(skip, gating if k == 0 else h)
            alphas.append(alpha)
            up = F.interpolate(h, size=skip.shape[2:], mode=self.mode, align_corners=False)
            h = dec(torch.cat([gated, up], dim=1))
            logits = head(h)
            if k < n - 1:
                logits = F.interpolate(logits, size=size, mode=self.mode, align_corners=False)
            dsv.insert(0, logits)
        final = self.fuse(torch.cat(dsv, dim=1))
        return final, dsv, alphas

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, self.size_divisible_by, "GridAttentionUNet")
        final, dsv, _ = self._run(x)
        if self.training and self.deep_supervision:
            return [final] + dsv
        return final

    @attention_maps_method
    def attention_maps(self, x: torch.Tensor, at_input_size: bool = False) -> dict[str, torch.Tensor]:
        """Attention coefficients of every gate, from an eval-mode forward pass without gradients.

        Args:
            x: input (B, in_channels, *spatial), spatial sizes multiples of ``size_divisible_by``.
            at_input_size: resample the maps (bi/trilinearly, values stay in [0, 1]) to the input size.

        Returns:
            ``{"level<i>": alpha}`` for each gated level ``i`` (0 = full resolution), ``alpha`` of shape
            ``(B, attention_heads, *skip_i_spatial)`` (the skip's grid, ``input_size / 2**i``) or of the input size.
        """
        _, _, alphas = self._run(x)
        n_skips = len(self.features) - 1
        maps: dict[str, torch.Tensor] = {}
        for level in range(n_skips):  # alphas run deepest level first
            alpha = alphas[n_skips - 1 - level]
            if alpha is None:
                continue
            if at_input_size and alpha.shape[2:] != x.shape[2:]:
                alpha = F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)
            maps[f"level{level}"] = alpha
        return maps
