"""One stage of DANIE's dual attention encoder (Dual Attention Encoder with Joint Preservation, ECAI 2024).

A stage runs the two streams side by side and fuses them with Joint Preservation:

* SAP (self-attentional perception): patch embedding (stage 1: the image cut into ``patch_size`` patches; later
  stages: overlapping 3x3(x3) stride-2 patch merging), ``depth`` transformer blocks with spatial-reduction
  multi-head self-attention, a final LayerNorm, and the tokens folded back into a feature map.
* HAP (hierarchical-attentional perception): ``depth`` hierarchical attention blocks (the first with stride 2 after
  stage 1).
* JP: ES on the SAP map, EH on the HAP map, aggregation by convolution and addition.

The stage returns both streams (each continues into the next stage on its own) and the fused map (a skip connection
for the decoder), together with the attention maps of its HAP blocks and the ES gate.
"""

from __future__ import annotations

import torch
from torch import nn

from .hierarchical_attention import HierarchicalAttentionBlock
from .joint_preservation import JointPreservation
from .transformer import PatchEmbedding, TransformerBlock, tokens_to_map

__all__ = ["DualAttentionStage"]


class DualAttentionStage(nn.Module):
    """SAP stream + HAP stream + Joint Preservation at one resolution.

    Args:
        spatial_dims: 2 or 3.
        sap_in_channels: channels entering the SAP stream (the image channels for the first stage).
        hap_in_channels: channels entering the HAP stream.
        channels: width of both streams and of the fused output at this stage.
        depth: transformer blocks in SAP and hierarchical attention blocks in HAP.
        num_heads: attention heads (a divisor of ``channels``).
        sr_ratio: key/value reduction of the self-attention and key/value pooling of the non-local block.
        patch_kernel: kernel of the SAP patch embedding.
        patch_stride: stride of the SAP patch embedding (the patch size for the first stage, 2 afterwards).
        hap_stride: stride of the first HAP block (1 for the first stage, whose input comes from the conv stem).
        mlp_ratio: feed-forward width of the transformer blocks as a multiple of ``channels``.
        dropout: dropout in the transformer blocks and HAP convolutions.
        attn_dropout: dropout on the attention probabilities.
        reduction: channel reduction of the channel attention, calibration and ES gates.
        spatial_kernel_size: kernel of the HAP spatial attention.
        norm: normalisation spec of the convolutions (MONAI style).
        act: activation spec of the convolutions (MONAI style).

    Returns (forward): ``(sap_map, hap_map, fused, channel_maps, spatial_maps, calibration_gates, es_gate)``.

    Raises:
        ValueError: from the blocks, on bad heads, ratios or kernel sizes.

    Example::

        >>> import torch
        >>> st = DualAttentionStage(2, 1, 32, 32, depth=1, num_heads=1, sr_ratio=2, patch_kernel=4, patch_stride=4)
        >>> s, h, f, *_ = st(torch.randn(2, 1, 32, 32), torch.randn(2, 32, 8, 8))
        >>> tuple(s.shape), tuple(h.shape), tuple(f.shape)
        ((2, 32, 8, 8), (2, 32, 8, 8), (2, 32, 8, 8))
        >>> st3 = DualAttentionStage(
        ...     3, 16, 16, 32, depth=1, num_heads=2, sr_ratio=1, patch_kernel=3, patch_stride=2, hap_stride=2
        ... )
        >>> s, h, f, *_ = st3(torch.randn(2, 16, 8, 8, 8), torch.randn(2, 16, 8, 8, 8))
        >>> tuple(f.shape)
        (2, 32, 4, 4, 4)
    """

    def __init__(
        self,
        spatial_dims: int,
        sap_in_channels: int,
        hap_in_channels: int,
        channels: int,
        depth: int,
        num_heads: int,
        sr_ratio: int,
        patch_kernel: int,
        patch_stride: int,
        hap_stride: int = 1,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbedding(spatial_dims, sap_in_channels, channels, patch_kernel, patch_stride)
        self.sap_blocks = nn.ModuleList(
            TransformerBlock(spatial_dims, channels, num_heads, mlp_ratio, sr_ratio, dropout, attn_dropout)
            for _ in range(depth)
        )
        self.sap_norm = nn.LayerNorm(channels)
        self.hap_blocks = nn.ModuleList(
            HierarchicalAttentionBlock(
                spatial_dims,
                hap_in_channels if i == 0 else channels,
                channels,
                stride=hap_stride if i == 0 else 1,
                reduction=reduction,
                spatial_kernel_size=spatial_kernel_size,
                norm=norm,
                act=act,
                dropout=dropout,
            )
            for i in range(depth)
        )
        self.joint_preservation = JointPreservation(
            spatial_dims, channels, reduction=reduction, sub_sample=sr_ratio, norm=norm, act=act
        )

    def forward(
        self, sap: torch.Tensor, hap: torch.Tensor
    ) -> tuple[
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        list[torch.Tensor],
        list[torch.Tensor],
        list[torch.Tensor],
        torch.Tensor,
    ]:
        tokens, spatial = self.patch_embed(sap)
        for block in self.sap_blocks:
            tokens = block(tokens, spatial)
        sap = tokens_to_map(self.sap_norm(tokens), spatial)
        channel_maps: list[torch.Tensor] = []
        spatial_maps: list[torch.Tensor] = []
        gates: list[torch.Tensor] = []
        for block in self.hap_blocks:
            hap, channel_map, spatial_map, gate = block(hap)
            channel_maps.append(channel_map)
            spatial_maps.append(spatial_map)
            gates.append(gate)
        fused, es_gate = self.joint_preservation(sap, hap)
        return sap, hap, fused, channel_maps, spatial_maps, gates, es_gate
