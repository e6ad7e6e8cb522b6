"""Han-Net: He et al., "A Hybrid-Attention Nested UNet for Nuclear Segmentation in Histopathological Images", 2021.

An encoder of ``L + 1`` levels, a decoder whose nodes fuse skips refined by a residual spatial attention
``s' = s + s * A(s)``, a bottleneck recalibrated by a squeeze-and-excitation channel attention, and 1x1 heads fused
by a learned 1x1 convolution. Two decoders and two sets of heads can be chosen:

- ``skips="nested"`` (default, our reading): UNet++ style dense skip pathways; node ``X^{i,j}`` receives every
  earlier node of its level and the upsampled node one level deeper, so the top row ``X^{0,0..L}`` is a
  full-resolution path kept through the whole decoding.
- ``skips="seed"`` (the seed's words): one decoder node ``D_i`` per level, receiving the same-level encoder features,
  the upsampled features of ALL deeper encoder levels and the deeper decoder node.
- ``heads="full_resolution"`` (default, our reading): a head on each top-row node ``X^{0,1..L}``, all at full
  resolution. ``heads="per_level"`` (the seed's words): a head on each decoder level's node at that level's
  resolution, upsampled to the input size before the fusion.

``use_spatial_attention`` / ``use_channel_attention`` switch the two attentions off (ablations).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from ..blocks.cbam import ChannelAttention
from ..blocks.conv_blocks import DoubleConv
from ..blocks.hybrid_attention import FullScaleNode, NestedNode, SkipSpatialAttention
from ..registry import register_network
from ..utils import attention_maps_method, check_channels, check_input_size, check_spatial_dims

__all__ = ["HanNet"]

_UPSAMPLE_MODES = ("deconv", "nontrainable")
#: decoder connectivities: UNet++ style dense nesting (default) or the seed's same level + all deeper encoder levels
SKIPS = ("nested", "seed")
#: where the heads sit: every top-row node at full resolution (default) or one per decoder level at its resolution
HEADS = ("full_resolution", "per_level")


@register_network("hannet")
class HanNet(nn.Module):
    """Hybrid-attention nested U-Net (Han-Net) of He et al., 2021, for 2D and 3D segmentation.

    With ``L = len(features) - 1``, the encoder nodes are ``X^{i,0}`` (``i = 0..L``, two convolutions each, max
    pooling between levels); ``X^{L,0}`` is multiplied by its SE channel weights before it is used, and every skip
    source ``s`` enters the decoder as ``A(s) = s + s * SA(s)`` (:class:`SkipSpatialAttention`, one unit per source).

    Decoder (``skips``):

    - ``"nested"`` (default; our reading of "nested, dense skip connections" and "a full-resolution information flow
      kept through the decoding"): nodes ``X^{i,j}``, ``j >= 1``, ``i + j <= L``,
      ``X^{i,j} = H([A(X^{i,0}), ..., A(X^{i,j-1}), Up(X^{i+1,j-1})])`` (:class:`NestedNode`), UNet++'s grid;
      skip sources are all ``X^{i,j}`` with ``i + j < L``.
    - ``"seed"`` (the seed states it: "each decoder level receives the same-level encoder features and the upsampled
      features of all deeper encoder levels"): one node per level, ``D_i = H([A(X^{i,0}), U(X^{i+1,0}), ...,
      U(X^{L,0}), Up(D_{i+1})])`` (:class:`FullScaleNode`; ``D_{L-1}`` has no ``Up(D_{i+1})``: its only deeper
      level is the bottleneck). The chain ``Up(D_{i+1})`` is the U-Net decoder the seed says Han-Net inherits ("the
      decoder restores the resolution step by step by upsampling and fusion"); projecting every deeper input to
      ``features[i]`` channels is our choice. Skip sources are the encoder nodes ``X^{0..L-1,0}``.

    Heads (``heads``), 1x1 convolutions giving logits (the seed's sigmoid is left to the loss), fused by a learned 1x1
    convolution over their concatenation, initialised to the per-class mean (the seed: "a weighted average or
    concatenation + convolution" of the outputs upsampled to the input size):

    - ``"full_resolution"`` (default; our reading): ``Y_k = conv1x1(X^{0,k})``, ``k = 1..L``, on the top-row
      nodes, already at full resolution; needs ``skips="nested"`` (the seed decoder has one full-resolution node).
    - ``"per_level"`` (the seed states it: "each decoder level has a 1x1 conv + sigmoid head giving the map at that
      resolution; all maps are upsampled to the input size and fused"): ``Y_i`` on decoder level ``i = 0..L-1``
      (``X^{i,L-i}`` when nested, ``D_i`` for the seed decoder) at resolution ``1/2^i``, upsampled by linear
      interpolation for the fusion.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (logits, no final activation).
        features: feature channels per level, at least 2 entries. The seed gives no depth or widths: the default
            five levels ``(32, 64, 128, 256, 512)`` are our choice (UNet++'s).
        act: activation spec of the convolutions.
        norm: normalisation spec of the convolutions.
        dropout: dropout probability after each convolution, in [0, 1).
        upsample: ``"deconv"`` (2x2 transposed convolution) or ``"nontrainable"`` (1x1 convolution and linear
            interpolation) for every ``Up`` by 2 (inputs further down, with ``skips="seed"``, always take a 1x1
            convolution and linear interpolation).
        channel_reduction: reduction ratio of the SE channel attention's MLP at the bottleneck.
        spatial_kernel_size: odd kernel size of the skip spatial attention's convolution.
        deep_supervision: in training mode return ``[fused, Y_1, ..., Y_L]`` (the heads before any upsampling:
            all at input size with ``heads="full_resolution"``, ``Y_i`` at ``1/2^i`` of it with ``"per_level"``)
            instead of the fused map alone.
        skips: ``"nested"`` or ``"seed"``, see above.
        heads: ``"full_resolution"`` or ``"per_level"``, see above.
        use_spatial_attention: ``False`` passes every skip unrefined (no :class:`SkipSpatialAttention`).
        use_channel_attention: ``False`` uses the bottleneck without SE weights (no :class:`ChannelAttention`).

    Raises:
        ValueError: on a ``spatial_dims`` other than 2 or 3, non-positive channel counts, fewer than 2
            ``features`` or a non-positive one, ``dropout`` outside [0, 1), an unknown ``upsample``, ``skips`` or
            ``heads``, ``heads="full_resolution"`` with ``skips="seed"``, a ``channel_reduction`` below 1, an even
            ``spatial_kernel_size`` or non-boolean switches; in ``forward``, on a spatial size that is not a
            multiple of ``size_divisible_by = 2 ** (len(features) - 1)``.

    Examples::

        >>> net = HanNet(2, 3, 2)  # five levels (our default): inputs must be multiples of 16
        >>> net.eval()(torch.randn(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
        >>> net3d = HanNet(3, 1, 3, features=(8, 16, 32, 64), deep_supervision=True)
        >>> [o.shape[1:] for o in net3d.train()(torch.randn(2, 1, 32, 32, 32))][:2]
        [torch.Size([3, 32, 32, 32]), torch.Size([3, 32, 32, 32])]
        >>> seed = HanNet(2, 3, 3, features=(8, 16, 32), skips="seed", heads="per_level", deep_supervision=True)
        >>> [tuple(o.shape[2:]) for o in seed.train()(torch.randn(2, 3, 64, 64))]
        [(64, 64), (64, 64), (32, 32)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (32, 64, 128, 256, 512),
        act: str | tuple = "relu",
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        upsample: str = "deconv",
        channel_reduction: int = 16,
        spatial_kernel_size: int = 7,
        deep_supervision: bool = False,
        skips: str = "nested",
        heads: str = "full_resolution",
        use_spatial_attention: bool = True,
        use_channel_attention: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "HanNet")
        check_channels("HanNet", in_channels=in_channels, out_channels=out_channels)
        features = tuple(features)
        if len(features) < 2 or any(not isinstance(f, int) or f < 1 for f in features):
            raise ValueError(
                f"HanNet: features must list at least 2 positive integers (one per level), got {features}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"HanNet: dropout must be in [0, 1), got {dropout}.")
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(f"HanNet: upsample must be one of {_UPSAMPLE_MODES}, got {upsample!r}.")
        if not isinstance(channel_reduction, int) or channel_reduction < 1:
            raise ValueError(f"HanNet: channel_reduction must be an integer >= 1, got {channel_reduction!r}.")
        if not isinstance(spatial_kernel_size, int) or spatial_kernel_size < 1 or spatial_kernel_size % 2 == 0:
            raise ValueError(
                f"HanNet: spatial_kernel_size must be a positive odd integer, got {spatial_kernel_size!r}."
            )
        if skips not in SKIPS:
            raise ValueError(f"HanNet: skips must be one of {SKIPS}, got {skips!r}.")
        if heads not in HEADS:
            raise ValueError(f"HanNet: heads must be one of {HEADS}, got {heads!r}.")
        if skips == "seed" and heads == "full_resolution":
            raise ValueError(
                "HanNet: heads='full_resolution' needs skips='nested' (it puts a head on every full-resolution "
                "decoder node; the seed decoder has only one); with skips='seed' use heads='per_level'."
            )
        for name, flag in (
            ("deep_supervision", deep_supervision),
            ("use_spatial_attention", use_spatial_attention),
            ("use_channel_attention", use_channel_attention),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"HanNet: {name} must be true or false, got {flag!r}.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.depth = len(features) - 1  # L: number of poolings, and of heads
        self.deep_supervision = deep_supervision
        self.nested = skips == "nested"
        self.full_resolution_heads = heads == "full_resolution"
        self.size_divisible_by: int = 2**self.depth
        depth = self.depth

        # Encoder X^{i,0}, i = 0..L, and the SE channel attention on the bottleneck X^{L,0}.
        self.encoder = nn.ModuleList(
            DoubleConv(spatial_dims, in_channels if i == 0 else features[i - 1], features[i], act, norm, dropout)
            for i in range(depth + 1)
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.channel_attention: nn.Module | None = None
        if use_channel_attention:
            self.channel_attention = ChannelAttention(
                spatial_dims, features[depth], reduction=channel_reduction, pooling=("avg",)
            )
        # skip_attention[j][i] refines the skip source X^{i,j}: nested, every node with i + j < L feeds later nodes
        # of its level (L columns); seed, only the encoder nodes X^{0..L-1,0} (one column). Empty columns without
        # spatial attention.
        columns = depth if self.nested else 1
        self.skip_attention = nn.ModuleList(
            nn.ModuleList(
                SkipSpatialAttention(spatial_dims, spatial_kernel_size)
                for _ in range(depth - j if use_spatial_attention else 0)
            )
            for j in range(columns)
        )
        # nested: decoder[j - 1][i] is X^{i,j}: j same-level inputs plus the upsampled X^{i+1,j-1}.
        self.decoder = nn.ModuleList(
            nn.ModuleList(
                NestedNode(spatial_dims, j, features[i], features[i + 1], act, norm, dropout, upsample)
                for i in range(depth - j + 1)
            )
            for j in range(1, depth + 1)
            if self.nested
        )
        # seed: decoder_levels[k] is D_{L-1-k} (deepest first, the order they run).
        self.decoder_levels = nn.ModuleList(
            FullScaleNode(
                spatial_dims,
                features[i],
                features[i + 1 :],
                features[i + 1] if i < depth - 1 else None,
                act,
                norm,
                dropout,
                upsample,
            )
            for i in range(depth - 1, -1, -1)
            if not self.nested
        )
        # One 1x1 head per top-row node X^{0,1..L} or per decoder level 0..L-1, and the learned fusion of the heads.
        conv = Conv[Conv.CONV, spatial_dims]
        head_channels = [features[0]] * depth if self.full_resolution_heads else list(features[:depth])
        self.heads = nn.ModuleList(conv(c, out_channels, 1) for c in head_channels)
        interp = "bilinear" if spatial_dims == 2 else "trilinear"
        self.head_upsample = nn.ModuleList(
            nn.Identity()
            if self.full_resolution_heads or i == 0
            else nn.Upsample(scale_factor=2**i, mode=interp, align_corners=False)
            for i in range(depth)
        )
        self.fusion = conv(depth * out_channels, out_channels, 1)
        with torch.no_grad():  # start as the mean of the heads, class by class; training moves it from there
            self.fusion.weight.zero_()
            self.fusion.bias.zero_()
            for k in range(depth):
                for c in range(out_channels):
                    self.fusion.weight[(c, k * out_channels + c) + (0,) * spatial_dims] = 1.0 / depth

    def _nested(
        self, column: list[torch.Tensor], collect: bool, maps: dict[str, torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The top-row nodes ``X^{0,1..L}`` and the last node of every level ``X^{i,L-i}``, ``i = 0..L-1``."""
        skips: list[list[torch.Tensor]] = [[] for _ in range(self.depth)]  # refined A(X^{i,0..j-1}) per level
        top: list[torch.Tensor] = []
        ends: list[torch.Tensor] = []
        for j, (attention_column, node_column) in enumerate(zip(self.skip_attention, self.decoder)):
            refined = column[: self.depth - j]  # the skip sources X^{i,j}, i + j < L
            for i, unit in enumerate(attention_column):
                refined[i], amap = unit(column[i])
                if collect:
                    maps["skip_" + str(i) + "_" + str(j)] = amap
            for i, r in enumerate(refined):
                skips[i].append(r)
            next_column: list[torch.Tensor] = []
            for i, node in enumerate(node_column):
                next_column.append(node(skips[i], column[i + 1]))
            column = next_column
            top.append(column[0])
            ends.append(column[-1])  # X^{L-1-j, j+1}
        ends.reverse()
        return top, ends

    def _full_scale(
        self, column: list[torch.Tensor], collect: bool, maps: dict[str, torch.Tensor]
    ) -> list[torch.Tensor]:
        """The seed decoder's nodes ``D_0..D_{L-1}``."""
        encoder = column[: self.depth]
        for i, unit in enumerate(self.skip_attention[0]):
            encoder[i], amap = unit(column[i])
            if collect:
                maps["skip_" + str(i) + "_0"] = amap
        encoder.append(column[self.depth])
        levels: list[torch.Tensor] = []
        d: torch.Tensor | None = None
        for k, node in enumerate(self.decoder_levels):
            i = self.depth - 1 - k
            d = node(encoder[i], encoder[i + 1 :], d)
            levels.append(d)
        levels.reverse()
        return levels

    def _run(self, x: torch.Tensor, collect: bool) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """The head inputs (one per head, in head order) and, when ``collect``, the attention maps by name."""
        maps: dict[str, torch.Tensor] = {}
        column: list[torch.Tensor] = []  # the encoder column X^{., 0}
        h = x
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = self.pool(h)
            h = stage(h)
            column.append(h)
        if self.channel_attention is not None:
            weights = self.channel_attention(column[-1])
            column[-1] = column[-1] * weights
            if collect:
                maps["bottleneck_channel"] = weights
        if self.nested:
            top, ends = self._nested(column, collect, maps)
            return (top if self.full_resolution_heads else ends), maps
        return self._full_scale(column, collect, maps), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, self.size_divisible_by, "HanNet")
        inputs, _ = self._run(x, False)
        heads: list[torch.Tensor] = []
        upsampled: list[torch.Tensor] = []
        for k, (head, up) in enumerate(zip(self.heads, self.head_upsample)):
            y = head(inputs[k])
            heads.append(y)
            upsampled.append(up(y))
        fused = self.fusion(torch.cat(upsampled, dim=1))
        if self.training and self.deep_supervision:
            return [fused] + heads
        return fused

    @attention_maps_method
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attention maps of one eval-mode pass, without gradients.

        Returns:
            ``"skip_{i}_{j}"``: the spatial map ``SA(X^{i,j})`` in [0, 1], shape ``(B, 1, *spatial_i)`` with
            ``spatial_i = input size / 2**i``, for every skip source (``i + j < L`` nested, ``j = 0, i < L`` with
            ``skips="seed"``; none with ``use_spatial_attention=False``); ``"bottleneck_channel"``: the SE channel
            weights of ``X^{L,0}``, shape ``(B, features[-1], 1, ...)`` (absent with ``use_channel_attention=False``).

        Raises:
            ValueError: on an input size that is not a multiple of ``size_divisible_by``.
        """
        return self._run(x, True)[1]
