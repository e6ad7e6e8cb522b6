"""One stage of DANIE's dual attention encoder (Dual Attention Encoder with Joint Preservation, ECAI 2024).

A stage runs the two streams side by side and fuses them with Joint Preservation:

* SAP (self-attentional perception): patch embedding (stage 1: the image cut into ``patch_size`` patches; later
  stages: overlapping 3x3(x3) stride-2 patch merging), ``depth`` transformer blocks with multi-head self-attention
  (spatial-reduction attention by default, full attention with ``sap_attention="full"``), a final LayerNorm, and the
  tokens folded back into a feature map.
* HAP (hierarchical-attentional perception): ``depth`` hierarchical attention blocks (the first with stride 2 after
  stage 1).
* JP: ES on the SAP map, EH on the HAP map, aggregation by convolution and addition; or, for the seed's fusion
  ablation, element-wise addition or concatenation (``fusion``).

``streams="sap"`` or ``"hap"`` builds one stream only (the seed's ablation of the dual encoder): there is then
nothing to fuse, and the stage's output map is that stream's own map.

The stage returns both streams (each continues into the next stage on its own; ``None`` for an absent stream) and the
fused map (a skip connection for the decoder), together with the attention maps of its HAP blocks and the ES gate.
"""

from __future__ import annotations

import torch
from torch import nn

from .hierarchical_attention import HAP_ORDERS, HierarchicalAttentionBlock
from .joint_preservation import JointPreservation
from .stream_fusion import FUSIONS, AdditionFusion, ConcatenationFusion
from .transformer import PatchEmbedding, TransformerBlock, tokens_to_map

__all__ = ["SAP_ATTENTIONS", "STREAMS", "DualAttentionStage"]

#: the encoder streams: both (DANIE), the self-attentional stream only, the hierarchical-attentional stream only
STREAMS = ("both", "sap", "hap")
#: the SAP attention: spatial-reduction attention (keys/values from a coarser grid; ours) or full multi-head
#: self-attention over every token (what the seed states)
SAP_ATTENTIONS = ("spatial_reduction", "full")


def _check_choice(name: str, value: object, valid: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(repr(v) for v in valid)}; got {value!r}.")


class DualAttentionStage(nn.Module):
    """SAP stream + HAP stream + Joint Preservation at one resolution.

    Args:
        spatial_dims: 2 or 3.
        sap_in_channels: channels entering the SAP stream (the image channels for the first stage).
        hap_in_channels: channels entering the HAP stream.
        channels: width of both streams and of the fused output at this stage.
        depth: transformer blocks in SAP and hierarchical attention blocks in HAP.
        num_heads: attention heads (a divisor of ``channels``).
        sr_ratio: key/value reduction of the self-attention (with ``sap_attention="spatial_reduction"``) and
            key/value pooling of the non-local block of Joint Preservation.
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
        streams: ``"both"`` (default), ``"sap"`` or ``"hap"``: the streams built; with one stream ``fusion`` is not
            used and the stage's output is that stream's map.
        sap_attention: ``"spatial_reduction"`` (default: keys and values from the ``sr_ratio``-times coarser grid) or
            ``"full"`` (every token attends to every token).
        hap_order: ``"channel_first"`` (default) or ``"spatial_first"``.
        dynamic_calibration: whether the HAP blocks gate their attended features (default ``True``).
        fusion: ``"joint_preservation"`` (default), ``"add"`` or ``"concat"`` (concatenation + 1x1 projection).

    Returns (forward): ``(sap_map, hap_map, fused, maps)``: the maps of each stream (``None`` for an absent stream),
    the fused map, and the attention maps in [0, 1] by name: ``hap{j}.channel``, ``hap{j}.spatial``,
    ``hap{j}.calibration`` per HAP block ``j`` and ``es`` (the ES gate), where the stage has them.

    Raises:
        ValueError: from the blocks, on bad heads, ratios or kernel sizes; on a ``streams``, ``sap_attention``,
            ``hap_order`` or ``fusion`` outside its valid values (the message lists them).

    Example::

        >>> import torch
        >>> st = DualAttentionStage(2, 1, 32, 32, depth=1, num_heads=1, sr_ratio=2, patch_kernel=4, patch_stride=4)
        >>> s, h, f, maps = st(torch.randn(2, 1, 32, 32), torch.randn(2, 32, 8, 8))
        >>> tuple(s.shape), tuple(h.shape), tuple(f.shape), sorted(maps)
        ((2, 32, 8, 8), (2, 32, 8, 8), (2, 32, 8, 8), ['es', 'hap0.calibration', 'hap0.channel', 'hap0.spatial'])
        >>> st3 = DualAttentionStage(
        ...     3, 16, 16, 32, depth=1, num_heads=2, sr_ratio=1, patch_kernel=3, patch_stride=2, hap_stride=2,
        ...     streams="hap",
        ... )
        >>> s, h, f, maps = st3(None, torch.randn(2, 16, 8, 8, 8))
        >>> s is None, tuple(f.shape)
        (True, (2, 32, 4, 4, 4))
    """

    __constants__ = ["has_sap", "has_hap", "fuse", "joint"]

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
        streams: str = "both",
        sap_attention: str = "spatial_reduction",
        hap_order: str = "channel_first",
        dynamic_calibration: bool = True,
        fusion: str = "joint_preservation",
    ) -> None:
        super().__init__()
        _check_choice("streams", streams, STREAMS)
        _check_choice("sap_attention", sap_attention, SAP_ATTENTIONS)
        _check_choice("hap_order", hap_order, HAP_ORDERS)
        _check_choice("fusion", fusion, FUSIONS)
        self.has_sap = streams in ("both", "sap")
        self.has_hap = streams in ("both", "hap")
        self.fuse = self.has_sap and self.has_hap
        self.joint = self.fuse and fusion == "joint_preservation"
        # the module names of the default configuration are those of the checkpoints trained before the switches
        self.patch_embed: PatchEmbedding | None = None
        self.sap_blocks: nn.ModuleList | None = None
        self.sap_norm: nn.LayerNorm | None = None
        if self.has_sap:
            attention_ratio = sr_ratio if sap_attention == "spatial_reduction" else 1
            self.patch_embed = PatchEmbedding(spatial_dims, sap_in_channels, channels, patch_kernel, patch_stride)
            self.sap_blocks = nn.ModuleList(
                TransformerBlock(spatial_dims, channels, num_heads, mlp_ratio, attention_ratio, dropout, attn_dropout)
                for _ in range(depth)
            )
            self.sap_norm = nn.LayerNorm(channels)
        self.hap_blocks: nn.ModuleList | None = None
        if self.has_hap:
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
                    order=hap_order,
                    dynamic_calibration=dynamic_calibration,
                )
                for i in range(depth)
            )
        self.joint_preservation: JointPreservation | None = None
        self.fusion: nn.Module | None = None
        if self.joint:
            self.joint_preservation = JointPreservation(
                spatial_dims, channels, reduction=reduction, sub_sample=sr_ratio, norm=norm, act=act
            )
        elif self.fuse and fusion == "add":
            self.fusion = AdditionFusion()
        elif self.fuse:
            self.fusion = ConcatenationFusion(spatial_dims, channels, norm=norm, act=act)

    def forward(
        self, sap: torch.Tensor | None, hap: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, dict[str, torch.Tensor]]:
        maps: dict[str, torch.Tensor] = {}
        sap_out: torch.Tensor | None = None
        hap_out: torch.Tensor | None = None
        if self.has_sap and sap is not None:
            tokens, spatial = self.patch_embed(sap)
            for block in self.sap_blocks:
                tokens = block(tokens, spatial)
            sap_out = tokens_to_map(self.sap_norm(tokens), spatial)
        if self.has_hap and hap is not None:
            for j, block in enumerate(self.hap_blocks):
                hap, channel_map, spatial_map, gate = block(hap)
                maps["hap" + str(j) + ".channel"] = channel_map
                maps["hap" + str(j) + ".spatial"] = spatial_map
                if gate is not None:
                    maps["hap" + str(j) + ".calibration"] = gate
            hap_out = hap
        if self.fuse and sap_out is not None and hap_out is not None:
            if self.joint:
                fused, es_gate = self.joint_preservation(sap_out, hap_out)
                maps["es"] = es_gate
            else:
                fused = self.fusion(sap_out, hap_out)
        elif sap_out is not None:
            fused = sap_out
        elif hap_out is not None:
            fused = hap_out
        else:
            raise ValueError("DualAttentionStage: the input of the stage's stream is missing.")
        return sap_out, hap_out, fused, maps
