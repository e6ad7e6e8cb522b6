"""Per-network checks for FocalAttentionUNet and its NeighbourhoodAttention block (seed 002)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from attnseg_monai.networks import count_parameters, get_network
from attnseg_monai.networks.blocks.neighbourhood_attention import NeighbourhoodAttention
from attnseg_monai.networks.nets.focal_attention_unet import FocalAttentionUNet

TINY = {"in_channels": 1, "out_channels": 2, "features": (4, 8, 16), "kernel_size": 3, "attention_reduction": 2}


def _matrix(conv: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 convolution as (weight (out, in), bias (out,))."""
    weight = conv.weight.reshape(conv.weight.shape[0], conv.weight.shape[1])
    bias = conv.bias if conv.bias is not None else torch.zeros(weight.shape[0])
    return weight, bias


def _naive_attention(block: NeighbourhoodAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loop over every position and every window offset: attended features, weights and block output."""
    wq, bq = _matrix(block.query)
    wk, bk = _matrix(block.key)
    wv, bv = _matrix(block.value)
    wo, bo = _matrix(block.interaction)
    size = x.shape[2:]
    radius = [k // 2 for k in block.kernel_size]
    offsets = list(itertools.product(*(range(-r, r + 1) for r in radius)))
    attended = torch.zeros_like(x)
    weights = torch.zeros((x.shape[0], len(offsets), *size), dtype=x.dtype)
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for pos in itertools.product(*(range(s) for s in size)):
            feat = x[(b, slice(None), *pos)]
            q = wq @ feat + bq
            logits = {}
            for n, off in enumerate(offsets):
                nb = tuple(p + o for p, o in zip(pos, off))
                if all(0 <= c < s for c, s in zip(nb, size)):
                    k = wk @ x[(b, slice(None), *nb)] + bk
                    logits[n] = float(q @ k) / math.sqrt(wq.shape[0])
            top = max(logits.values())
            total = sum(math.exp(v - top) for v in logits.values())
            acc = torch.zeros(x.shape[1], dtype=x.dtype)
            for n, value in logits.items():
                w = math.exp(value - top) / total
                weights[(b, n, *pos)] = w
                nb = tuple(p + o for p, o in zip(pos, offsets[n]))
                acc = acc + w * (wv @ x[(b, slice(None), *nb)] + bv)
            attended[(b, slice(None), *pos)] = acc
            out[(b, slice(None), *pos)] = feat + wo @ acc + bo
    return attended, weights, out


@pytest.mark.parametrize(
    "spatial_dims,kernel_size,size",
    [(2, 3, (4, 5)), (2, (5, 3), (4, 3)), (3, 3, (3, 4, 2)), (3, (3, 1, 3), (2, 3, 3))],
)
def test_block_matches_naive_reference(spatial_dims, kernel_size, size):
    torch.manual_seed(0)
    block = NeighbourhoodAttention(spatial_dims, channels=4, kernel_size=kernel_size, reduction=2, norm=None).eval()
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    block = block.double()
    with torch.no_grad():
        ref_attended, ref_weights, ref_out = _naive_attention(block, x)
        attended, weights = block.attend(x)
        out = block(x)
    torch.testing.assert_close(weights, ref_weights)
    torch.testing.assert_close(attended, ref_attended)
    torch.testing.assert_close(out, ref_out)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_softmax_weights_sum_to_one_and_ignore_outside(spatial_dims):
    torch.manual_seed(0)
    block = NeighbourhoodAttention(spatial_dims, channels=6, kernel_size=5, reduction=3).eval()
    x = torch.randn(2, 6, *([6] * spatial_dims)) * 3
    with torch.no_grad():
        weights = block.weights(x)
        centre = block.centre_weight(x)
    assert weights.shape == (2, 5**spatial_dims, *([6] * spatial_dims))
    assert (weights >= 0).all() and (weights <= 1).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, *([6] * spatial_dims)))
    # At the corner only offsets >= 0 (relative to the centre) are inside the image; the others get weight 0.
    corner = weights[(slice(None), slice(None)) + (0,) * spatial_dims]
    inside = torch.tensor([all(o >= 2 for o in off) for off in block.offsets])
    assert (corner[:, ~inside] == 0).all() and (corner[:, inside] > 0).all()
    torch.testing.assert_close(centre, weights[:, block.centre_index : block.centre_index + 1])


def _support_width(net: torch.nn.Module, size: int) -> int:
    """Width of the input region that one central output pixel depends on (non-zero gradient)."""
    x = torch.randn(1, 1, size, size, requires_grad=True)
    net(x)[0, 0, size // 2, size // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1) > 0).flatten()
    return int(rows.max() - rows.min() + 1)


def test_dilations_widen_receptive_field_without_parameters():
    kwargs = {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 1,
        "features": (2, 4, 8),
        "attention_levels": (),
        "act": ("leakyrelu", {"negative_slope": 0.2}),
    }
    torch.manual_seed(0)
    plain = FocalAttentionUNet(**kwargs).eval()
    torch.manual_seed(0)
    dilated = FocalAttentionUNet(**kwargs, dilations=(1, 2, 4)).eval()
    assert count_parameters(plain) == count_parameters(dilated)
    plain_width, dilated_width = _support_width(plain, 128), _support_width(dilated, 128)
    # A 3x3 conv with rate r at stride s spans 2 * r * s more input pixels: rates 2 and 4 in the two convs of the
    # levels at strides 2 and 4 add 2 * (2 * 1 * 2 + 2 * 3 * 4) = 56 in theory (max pooling may trim a few).
    assert plain_width < 128 - 56
    assert plain_width + 48 <= dilated_width <= plain_width + 56


def test_attention_levels_defaults_and_maps():
    net = FocalAttentionUNet(2, **TINY)
    assert net.attention_levels == ("bottleneck", "decoder1")
    assert sum(isinstance(m, NeighbourhoodAttention) for m in net.modules()) == 2
    everywhere = ("encoder0", "encoder1", "bottleneck", "decoder1", "decoder0")
    net = FocalAttentionUNet(3, **TINY, attention_levels=everywhere, upsample="nontrainable").train()
    x = torch.randn(2, 1, 8, 8, 4)
    maps = net.attention_maps(x)
    assert list(maps) == list(everywhere)
    for name, level in zip(everywhere, (0, 1, 2, 1, 0)):
        assert maps[name].shape == (2, 1, 8 // 2**level, 8 // 2**level, 4 // 2**level)
        assert (maps[name] >= 0).all() and (maps[name] <= 1).all()
    assert net.training, "attention_maps restores the training flag"
    assert not any(m._forward_pre_hooks for m in net.modules()), "attention_maps leaves no hooks behind"
    plain = FocalAttentionUNet(2, **TINY, attention_levels=())
    assert not any(isinstance(m, NeighbourhoodAttention) for m in plain.modules())
    assert plain.attention_maps(torch.randn(1, 1, 8, 8)) == {}
    assert get_network("focalattentionunet", spatial_dims=2, **TINY).size_divisible_by == 4


@pytest.mark.parametrize(
    "kernel_size", [0, 2, -3, 1, (1, 1), (3, 3, 3), (3,), 3.0, True, (3, 4)], ids=lambda k: f"kernel={k!r}"
)
def test_invalid_kernel_size_raises(kernel_size):
    with pytest.raises(ValueError, match="kernel_size"):
        NeighbourhoodAttention(2, channels=4, kernel_size=kernel_size)
    with pytest.raises(ValueError, match="kernel_size"):
        FocalAttentionUNet(2, **{**TINY, "kernel_size": kernel_size})


@pytest.mark.parametrize(
    "levels", [["decoder2"], ["encoder2"], ["Bottleneck"], ["bottleneck", "bottleneck"], "decoder", [3]]
)
def test_invalid_attention_levels_raise(levels):
    with pytest.raises(ValueError, match="attention_levels"):
        FocalAttentionUNet(2, **TINY, attention_levels=levels)
