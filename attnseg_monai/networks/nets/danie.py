"""DANIE: Dual Attention Encoder with Joint Preservation for medical image segmentation (ECAI 2024).

The encoder runs two attention streams side by side at every stage: a self-attentional perception (SAP) stream of
transformer blocks that captures global spatial dependencies, and a hierarchical-attentional perception (HAP) stream
of convolutions refined by channel-then-spatial attention with dynamic calibration that captures local spatial-channel
dependencies. Joint Preservation (JP) fuses them per stage (ES: channel modelling of the SAP features; EH: non-local
interaction on the HAP features; aggregation by convolution and addition). A U-Net-like decoder upsamples the fused
features, with skips, back to the input size.

The seed's ablations are constructor switches (defaults: DANIE as described): ``streams`` (both, SAP only, HAP only),
``hap_order`` (channel-first or spatial-first attention), ``dynamic_calibration`` (on or off), ``fusion`` (Joint
Preservation, element-wise addition, concatenation), and ``sap_attention`` (our spatial-reduction attention or the
full multi-head self-attention the seed states).

Presets (timm style): ``danie_small``, ``danie_base``, ``danie_large``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from ..blocks.dual_attention_encoder import SAP_ATTENTIONS, STREAMS, DualAttentionStage
from ..blocks.hierarchical_attention import HAP_ORDERS, ConvStem
from ..blocks.skip_upsample import SkipUpBlock
from ..blocks.stream_fusion import FUSIONS
from ..registry import register_network
from ..utils import attention_maps_method, check_channels, check_input_size, check_spatial_dims

__all__ = [
    "DANIE",
    "DANIE_PRESETS",
    "FUSIONS",
    "HAP_ORDERS",
    "SAP_ATTENTIONS",
    "STREAMS",
    "danie_small",
    "danie_base",
    "danie_large",
]

_NAME = "DANIE"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_power_of_two(value: Any) -> bool:
    return _is_int(value) and value >= 1 and (value & (value - 1)) == 0


def _int_tuple(name: str, values: Sequence[int], length: int | None = None) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{_NAME}: {name} must be a sequence of positive integers, got {values!r}.")
    out = tuple(values)
    if not out or any(not _is_int(v) or v < 1 for v in out):
        raise ValueError(f"{_NAME}: {name} must be a non-empty sequence of positive integers, got {values!r}.")
    if length is not None and len(out) != length:
        raise ValueError(
            f"{_NAME}: {name} needs one entry per stage ({length} stages, from len(embed_dims)), got {values!r}."
        )
    return out


def _check_choice(name: str, value: Any, valid: tuple[str, ...], meaning: str) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(
            f"{_NAME}: {name} must be one of {', '.join(repr(v) for v in valid)} ({meaning}); got {value!r}."
        )


def _default_heads(dim: int) -> int:
    heads = max(1, dim // 32)
    while dim % heads:
        heads -= 1
    return heads


@register_network("danie")
class DANIE(nn.Module):
    """Dual Attention Encoder with Joint Preservation (DANIE) for 2D and 3D segmentation.

    Stage ``i`` (of ``len(embed_dims)``) works at ``1 / (patch_size * 2**i)`` of the input with ``embed_dims[i]``
    channels. The SAP stream starts with a ``patch_size`` strided patch embedding, the HAP stream with a stem of
    ``log2(patch_size)`` stride-2 convolution levels reaching the same grid; each stage then applies ``depths[i]``
    transformer blocks (spatial-reduction attention with ratio ``sr_ratios[i]``) and ``depths[i]`` hierarchical
    attention blocks, and Joint Preservation fuses the two into the stage's skip feature. The streams continue
    separately; the decoder upsamples the deepest fused map by 2 per step, concatenating the fused maps of the
    shallower stages and then the stem levels, up to the input size, and a 1x1 convolution gives the logits.

    The ablation switches (JSON-friendly; the defaults build DANIE as above, and the weights' record keeps them):

    * ``streams="sap"``: no HAP stream: no conv stem (the HAP embedding layer), no HAP blocks, no fusion; each stage's
      skip is its SAP map and the decoder's steps above the patch grid run without skips. ``streams="hap"``: no SAP
      stream (no patch embedding, no transformer blocks), each stage's skip is its HAP map.
    * ``hap_order="spatial_first"``: spatial attention before channel attention in every HAP block.
    * ``dynamic_calibration=False``: the HAP blocks add their attended features without the calibration gate.
    * ``fusion="add"``: the streams are added; ``fusion="concat"``: concatenated and projected back to the stage
      width by a 1x1(x1) convolution with normalisation and activation (ours: the seed names the fusion only).
    * ``sap_attention="full"``: keys and values are every token of the stage (the multi-head self-attention the
      seed states; attention memory grows with the square of the token count: 3136^2 per head at stage 1 of a 224^2
      slice). ``sr_ratios`` then only pool the keys/values of JP's non-local block.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input image channels.
        out_channels: output classes (logit channels).
        img_size: optional training size (int or one entry per spatial dim); when given it is validated against
            ``size_divisible_by`` at construction. The network itself accepts any valid size (no size-bound
            position embedding).
        patch_size: SAP patch size and HAP stem downsampling, a positive power of two.
        embed_dims: channels per stage; its length is the number of stages.
        depths: transformer blocks and HAP blocks per stage (default 2 each).
        num_heads: attention heads per stage, each a divisor of ``embed_dims[i]`` (default: ``embed_dims[i] // 32``
            rounded down to a divisor, at least 1).
        sr_ratios: spatial-reduction ratios per stage, powers of two, ``sr_ratios[i]`` dividing
            ``2**(num_stages - 1 - i)`` (default ``min(8, 2**(num_stages - 1 - i))``: 8, 4, 2, 1 for 4 stages).
            The same ratio pools keys/values of the stage's non-local block.
        mlp_ratio: hidden width of the transformer feed-forward networks relative to the stage width.
        dropout: dropout in the transformer blocks and HAP convolutions.
        attn_dropout: dropout on the self-attention probabilities.
        reduction: channel reduction of the channel attention, dynamic calibration and ES gates.
        spatial_kernel_size: odd kernel of the HAP spatial attention.
        norm: normalisation of the convolutions (MONAI spec); the transformer blocks use LayerNorm.
        act: activation of the convolutions (MONAI spec); the transformer feed-forward networks use GELU.
        streams: ``"both"`` (default, DANIE), ``"sap"`` (self-attentional stream only) or ``"hap"``
            (hierarchical-attentional stream only).
        hap_order: ``"channel_first"`` (default; the seed's ablation found it slightly better) or ``"spatial_first"``.
        dynamic_calibration: ``True`` (default) or ``False``: the HAP blocks' calibration gate.
        fusion: ``"joint_preservation"`` (default, DANIE's JP), ``"add"`` (element-wise addition) or ``"concat"``
            (concatenation + 1x1 projection); only used with ``streams="both"``.
        sap_attention: ``"spatial_reduction"`` (default; ours, PVT's) or ``"full"`` (full multi-head
            self-attention, as the seed states).

    Attributes:
        size_divisible_by: ``patch_size * 2**(num_stages - 1)``; every input size must be a multiple of it.

    Raises:
        ValueError: on bad ``spatial_dims`` or channel counts; a ``patch_size`` that is not a positive power of two;
            per-stage sequences whose lengths differ; heads that do not divide the widths; ``sr_ratios`` that are not
            powers of two dividing the smallest grid of their stage; ``img_size`` entries that are not multiples of
            ``size_divisible_by`` (the message lists the valid sizes); ``mlp_ratio <= 0``; dropout outside [0, 1);
            a ``streams``, ``hap_order``, ``fusion`` or ``sap_attention`` outside its valid values, or a
            ``dynamic_calibration`` that is not a bool (the messages list the valid values).

    Example::

        >>> import torch
        >>> net = DANIE(2, in_channels=1, out_channels=9, img_size=224).eval()  # small configuration, Synapse size
        >>> net.size_divisible_by
        32
        >>> tuple(net(torch.zeros(1, 1, 64, 96)).shape)
        (1, 9, 64, 96)
        >>> net3 = DANIE(3, 1, 3, embed_dims=(16, 32, 64, 128), num_heads=(1, 1, 2, 4), patch_size=2).eval()
        >>> net3.size_divisible_by
        16
        >>> tuple(net3(torch.zeros(1, 1, 16, 32, 16)).shape)
        (1, 3, 16, 32, 16)
        >>> sap_only = DANIE(2, 1, 9, streams="sap", sap_attention="full").eval()  # an ablation row
        >>> sap_only.stem is None
        True
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        img_size: int | Sequence[int] | None = None,
        patch_size: int = 4,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        sr_ratios: Sequence[int] | None = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
        streams: str = "both",
        hap_order: str = "channel_first",
        dynamic_calibration: bool = True,
        fusion: str = "joint_preservation",
        sap_attention: str = "spatial_reduction",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, _NAME)
        check_channels(_NAME, in_channels=in_channels, out_channels=out_channels)
        if not _is_power_of_two(patch_size):
            raise ValueError(
                f"{_NAME}: patch_size must be a positive power of two (1, 2, 4, 8, ...), got {patch_size!r}."
            )
        dims = _int_tuple("embed_dims", embed_dims)
        n = len(dims)
        depths_t = _int_tuple("depths", depths, n) if depths is not None else (2,) * n
        heads = (
            _int_tuple("num_heads", num_heads, n) if num_heads is not None else tuple(_default_heads(d) for d in dims)
        )
        for i, (d, h) in enumerate(zip(dims, heads)):
            if d % h:
                valid = [k for k in range(1, d + 1) if d % k == 0]
                raise ValueError(
                    f"{_NAME}: embed_dims[{i}]={d} is not divisible by num_heads[{i}]={h}; valid head counts: {valid}."
                )
        ratios = (
            _int_tuple("sr_ratios", sr_ratios, n)
            if sr_ratios is not None
            else tuple(min(8, 2 ** (n - 1 - i)) for i in range(n))
        )
        for i, r in enumerate(ratios):
            grid = 2 ** (n - 1 - i)
            if not _is_power_of_two(r) or grid % r:
                valid = [2**k for k in range(n - i)]
                raise ValueError(
                    f"{_NAME}: sr_ratios[{i}]={r} must be a power of two dividing {grid} (the smallest token grid of "
                    f"stage {i}, so that every valid input size works); valid: {valid}."
                )
        if not mlp_ratio > 0:
            raise ValueError(f"{_NAME}: mlp_ratio must be positive, got {mlp_ratio}.")
        for key, value in (("dropout", dropout), ("attn_dropout", attn_dropout)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{_NAME}: {key} must be in [0, 1), got {value}.")
        if not _is_int(reduction) or reduction < 1:
            raise ValueError(f"{_NAME}: reduction must be a positive integer, got {reduction!r}.")
        if not _is_int(spatial_kernel_size) or spatial_kernel_size < 1 or spatial_kernel_size % 2 == 0:
            raise ValueError(
                f"{_NAME}: spatial_kernel_size must be a positive odd integer, got {spatial_kernel_size!r}."
            )
        _check_choice("streams", streams, STREAMS, "both streams, the SAP stream only, the HAP stream only")
        _check_choice("hap_order", hap_order, HAP_ORDERS, "the order of the HAP attentions")
        _check_choice("fusion", fusion, FUSIONS, "Joint Preservation, element-wise addition, concatenation")
        _check_choice("sap_attention", sap_attention, SAP_ATTENTIONS, "the self-attention of the SAP stream")
        if not isinstance(dynamic_calibration, bool):
            raise ValueError(f"{_NAME}: dynamic_calibration must be true or false, got {dynamic_calibration!r}.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.patch_size = patch_size
        self.embed_dims = dims
        self.depths = depths_t
        self.num_heads = heads
        self.sr_ratios = ratios
        self.streams = streams
        self.hap_order = hap_order
        self.dynamic_calibration = dynamic_calibration
        self.fusion = fusion
        self.sap_attention = sap_attention
        self.has_sap = streams in ("both", "sap")
        self.size_divisible_by: int = patch_size * 2 ** (n - 1)
        self.img_size = self._check_img_size(img_size)

        levels = int(math.log2(patch_size))
        stem_channels = max(dims[0] // 2, 8)
        self.stem: ConvStem | None = None
        if streams != "sap":  # the HAP stream's embedding layer
            self.stem = ConvStem(spatial_dims, in_channels, stem_channels, dims[0], levels, norm=norm, act=act)
        self.stages = nn.ModuleList(
            DualAttentionStage(
                spatial_dims,
                sap_in_channels=in_channels if i == 0 else dims[i - 1],
                hap_in_channels=dims[0] if i == 0 else dims[i - 1],
                channels=dims[i],
                depth=depths_t[i],
                num_heads=heads[i],
                sr_ratio=ratios[i],
                patch_kernel=patch_size if i == 0 else 3,
                patch_stride=patch_size if i == 0 else 2,
                hap_stride=1 if i == 0 else 2,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                attn_dropout=attn_dropout,
                reduction=reduction,
                spatial_kernel_size=spatial_kernel_size,
                norm=norm,
                act=act,
                streams=streams,
                sap_attention=sap_attention,
                hap_order=hap_order,
                dynamic_calibration=dynamic_calibration,
                fusion=fusion,
            )
            for i in range(n)
        )
        decoder = [SkipUpBlock(spatial_dims, dims[i + 1], dims[i], dims[i], norm, act) for i in range(n - 2, -1, -1)]
        channels = dims[0]
        stem_skip = stem_channels if self.stem is not None else 0
        for _ in range(levels - 1):  # up to the stem levels 1/(patch_size/2), ..., 1/2 (coarsest first)
            decoder.append(SkipUpBlock(spatial_dims, channels, stem_skip, stem_channels, norm, act))
            channels = stem_channels
        if levels > 0:  # full resolution, no skip
            decoder.append(SkipUpBlock(spatial_dims, channels, 0, stem_channels, norm, act))
            channels = stem_channels
        self.decoder = nn.ModuleList(decoder)
        self.head = Conv[Conv.CONV, spatial_dims](channels, out_channels, 1)
        # batch/instance normalisation on the deepest grid, which is 1 per axis for the smallest valid input
        deepest = list(self.stages[-1].modules())
        instance = [m for m in deepest if isinstance(m, nn.modules.instancenorm._InstanceNorm)]
        self.bottleneck_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in deepest)
        self.bottleneck_instance_norm = bool(instance)  # input statistics in training mode
        self.bottleneck_instance_stats = any(not m.track_running_stats for m in instance)  # ... and in eval mode

    def _check_img_size(self, img_size: int | Sequence[int] | None) -> tuple[int, ...] | None:
        if img_size is None:
            return None
        d = self.size_divisible_by
        sizes = (img_size,) * self.spatial_dims if _is_int(img_size) else tuple(img_size)
        hint = (
            f"with patch_size={self.patch_size} and {len(self.embed_dims)} stages every entry must be a multiple of "
            f"{d} = patch_size * 2**(num_stages - 1) (valid sizes: {d}, {2 * d}, {3 * d}, ...)"
        )
        if len(sizes) != self.spatial_dims or any(not _is_int(s) or s < 1 for s in sizes):
            raise ValueError(
                f"{_NAME}: img_size must be an int or {self.spatial_dims} positive ints, got {img_size!r}; {hint}."
            )
        bad = [s for s in sizes if s % d]
        if bad:
            nearest = sorted({max(d, (s // d) * d) for s in bad} | {(s // d + 1) * d for s in bad})
            raise ValueError(f"{_NAME}: img_size {img_size!r} is invalid: {hint}; nearest valid: {nearest}.")
        return sizes

    def _check_normalisable(self, x: torch.Tensor) -> None:
        """Batch norm in training (and instance norm) at the deepest stage needs more than one value per channel."""
        positions = 1
        for size in x.shape[2:]:
            positions = positions * (size // self.size_divisible_by)
        if positions > 1:
            return
        d = self.size_divisible_by
        example = str([2 * d] + [d] * (x.dim() - 3))
        if self.bottleneck_instance_stats or (self.bottleneck_instance_norm and self.training):
            raise ValueError(
                "DANIE: the instance norm of the deepest stage needs more than one position, but the input "
                + str(list(x.shape))
                + " gives its grid one position (every size / "
                + str(d)
                + " = 1). The smallest input it normalises has one size of "
                + str(2 * d)
                + " (e.g. "
                + example
                + "), or use norm='batch' or ('group', {'num_groups': ...})."
            )
        if self.bottleneck_batch_norm and self.training and x.shape[0] < 2:
            raise ValueError(
                "DANIE: in training mode the batch norm of the deepest stage needs more than one value per channel, "
                + "but the input "
                + str(list(x.shape))
                + " gives its grid one position (every size / "
                + str(d)
                + " = 1) and the batch is 1. The smallest trainable input of a batch of 1 has one size of "
                + str(2 * d)
                + " (e.g. "
                + example
                + "); or train with a batch of 2 or more, or norm=('group', {'num_groups': ...})."
            )

    def _run(self, x: torch.Tensor, collect: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_input_size(x, self.size_divisible_by, "DANIE")
        self._check_normalisable(x)
        maps: dict[str, torch.Tensor] = {}
        stem: list[torch.Tensor] = []
        sap: torch.Tensor | None = None
        hap: torch.Tensor | None = None
        if self.stem is not None:
            stem = self.stem(x)
            hap = stem[-1]
        if self.has_sap:
            sap = x
        fused: list[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            sap, hap, f, stage_maps = stage(sap, hap)
            fused.append(f)
            if collect:
                for key, value in stage_maps.items():
                    maps["stage" + str(i) + "." + key] = value
        skips: list[torch.Tensor] = []
        for i in range(len(fused) - 2, -1, -1):
            skips.append(fused[i])
        for i in range(len(stem) - 2, -1, -1):
            skips.append(stem[i])
        y = fused[-1]
        for i, block in enumerate(self.decoder):
            skip: torch.Tensor | None = None
            if i < len(skips):
                skip = skips[i]
            y = block(y, skip)
        return self.head(y), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, *spatial)`` for ``x`` ``(B, in_channels, *spatial)``.

        Raises:
            ValueError: if a spatial size of ``x`` is not a multiple of ``size_divisible_by``; if the deepest stage's
                batch norm (in training mode) or instance norm would see one value per channel (a batch of 1 at the
                smallest valid size): the message names the smallest trainable size.
        """
        return self._run(x, False)[0]

    @attention_maps_method
    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval-mode attention coefficients in [0, 1] per stage ``i`` and HAP block ``j``.

        Keys: ``stage{i}.hap{j}.channel`` (channel attention, ``(B, C_i, 1, ..)``), ``stage{i}.hap{j}.spatial``
        (spatial attention, ``(B, 1, *grid_i)``), ``stage{i}.hap{j}.calibration`` (dynamic calibration gate,
        ``(B, C_i, 1, ..)``) and ``stage{i}.es`` (ES channel gate of Joint Preservation, ``(B, C_i, 1, ..)``); only
        those the configuration has (no HAP keys with ``streams="sap"``, no calibration keys with
        ``dynamic_calibration=False``, no ES gate unless the streams are fused by Joint Preservation).
        """
        return self._run(x, True)[1]


#: DANIE-S / -B / -L (the paper reports DANIE-L): ``embed_dims``, ``depths``, ``num_heads`` of each preset
DANIE_PRESETS: dict[str, dict[str, Any]] = {
    "small": {"embed_dims": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "num_heads": (1, 2, 5, 8)},
    "base": {"embed_dims": (64, 128, 320, 512), "depths": (2, 2, 2, 2), "num_heads": (1, 2, 5, 8)},
    "large": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 6, 3), "num_heads": (1, 2, 5, 8)},
}


def _preset(name: str, spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> DANIE:
    return DANIE(spatial_dims, in_channels, out_channels, **{**DANIE_PRESETS[name], **kwargs})


@register_network("danie_small")
def danie_small(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> DANIE:
    """DANIE-S: widths (32, 64, 160, 256), depths (2, 2, 2, 2), heads (1, 2, 5, 8); ``kwargs`` override."""
    return _preset("small", spatial_dims, in_channels, out_channels, **kwargs)


@register_network("danie_base")
def danie_base(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> DANIE:
    """DANIE-B: widths (64, 128, 320, 512), depths (2, 2, 2, 2), heads (1, 2, 5, 8); ``kwargs`` override."""
    return _preset("base", spatial_dims, in_channels, out_channels, **kwargs)


@register_network("danie_large")
def danie_large(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> DANIE:
    """DANIE-L: widths (64, 128, 320, 512), depths (3, 4, 6, 3), heads (1, 2, 5, 8); ``kwargs`` override."""
    return _preset("large", spatial_dims, in_channels, out_channels, **kwargs)
