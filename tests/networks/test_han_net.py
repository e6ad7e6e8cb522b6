"""Han-Net specifics: dense nested skips, learned fusion of the top-row heads, deep supervision, attention maps."""

from __future__ import annotations

import pytest
import torch

from attnseg_monai.networks.blocks.hybrid_attention import NestedNode, SkipSpatialAttention
from attnseg_monai.networks.nets.han_net import HanNet

FEATURES = (4, 6, 8, 10)  # L = 3: decoder nodes up to X^{0,3}; distinct widths expose wrong wiring


def _net(spatial_dims: int = 2, **kwargs) -> HanNet:
    torch.manual_seed(0)
    return HanNet(spatial_dims, 1, 2, features=FEATURES, channel_reduction=2, **kwargs)


def test_every_decoder_node_receives_all_earlier_nodes_of_its_level_and_the_deeper_node():
    net = _net().eval()
    seen: dict[tuple[int, int], tuple[list, tuple]] = {}
    for j, column in enumerate(net.decoder, start=1):
        for i, node in enumerate(column):

            def hook(module, args, key=(i, j)):
                same_level, deeper = args
                seen[key] = ([tuple(t.shape) for t in same_level], tuple(deeper.shape))

            node.register_forward_pre_hook(hook)
    with torch.no_grad():
        net(torch.randn(1, 1, 16, 16))
    depth = len(FEATURES) - 1
    assert sorted(seen) == sorted((i, j) for j in range(1, depth + 1) for i in range(depth - j + 1))
    for (i, j), (same_level, deeper) in seen.items():
        size = 16 // 2**i
        assert same_level == [(1, FEATURES[i], size, size)] * j, f"X^{{{i},{j}}} must get X^{{{i},0..{j - 1}}}"
        assert deeper == (1, FEATURES[i + 1], size // 2, size // 2), f"X^{{{i},{j}}} must get X^{{{i + 1},{j - 1}}}"
    # X^{0,3}: three same-level nodes plus the upsampled X^{1,2} (mapped to FEATURES[0] channels) enter its conv.
    x03 = net.decoder[2][0]
    assert isinstance(x03, NestedNode) and x03.num_same_level == 3
    assert x03.conv.conv0.conv.in_channels == 3 * FEATURES[0] + FEATURES[0]


def test_fusion_is_learned_and_starts_as_the_mean_of_the_heads():
    net = _net(deep_supervision=True).train()
    depth = len(FEATURES) - 1
    assert net.fusion.weight.shape == (2, depth * 2, 1, 1) and net.fusion.weight.requires_grad
    x = torch.randn(2, 1, 16, 16)
    fused, *heads = net(x)
    torch.testing.assert_close(fused, torch.stack(heads).mean(0))
    fused.square().mean().backward()
    assert net.fusion.weight.grad is not None and net.fusion.weight.grad.abs().sum() > 0
    assert net.fusion.bias.grad is not None and net.fusion.bias.grad.abs().sum() > 0
    with torch.no_grad():
        net.fusion.weight -= net.fusion.weight.grad
        fused, *heads = net(x)
    assert not torch.allclose(fused, torch.stack(heads).mean(0)), "the fusion weights must change the output"


def test_deep_supervision_returns_fused_map_and_one_full_resolution_head_per_top_node():
    torch.manual_seed(0)  # five levels as in the paper (tiny widths; 3D is covered by the contract's case)
    net = HanNet(2, 1, 3, features=(2, 3, 4, 5, 6), channel_reduction=2, deep_supervision=True)
    size = (16, 32)  # five levels: multiples of 16
    assert net.size_divisible_by == 16
    outs = net.train()(torch.randn(2, 1, *size))
    assert isinstance(outs, list) and len(outs) == 4 + 1
    assert all(o.shape == (2, 3, *size) for o in outs)
    with torch.no_grad():
        torch.testing.assert_close(outs[0], net.fusion(torch.cat(outs[1:], dim=1)))
        assert isinstance(net.eval()(torch.randn(1, 1, *size)), torch.Tensor)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_attention_maps_cover_every_skip_and_the_bottleneck(spatial_dims):
    net = _net(spatial_dims).train()
    size = 16 if spatial_dims == 2 else 8
    maps = net.attention_maps(torch.randn(2, 1, *(size,) * spatial_dims))
    assert net.training, "attention_maps restores the training flag"
    depth = len(FEATURES) - 1
    skips = {f"skip_{i}_{j}" for j in range(depth) for i in range(depth - j)}
    assert set(maps) == skips | {"bottleneck_channel"}
    for key in skips:
        i = int(key.split("_")[1])
        assert maps[key].shape == (2, 1, *(size // 2**i,) * spatial_dims)
    assert maps["bottleneck_channel"].shape == (2, FEATURES[-1], *(1,) * spatial_dims)
    for amap in maps.values():
        assert amap.min() >= 0 and amap.max() <= 1 and not amap.requires_grad


def test_skip_attention_is_residual_with_zero_logits():
    unit = SkipSpatialAttention(2, kernel_size=3)
    with torch.no_grad():
        unit.attention.conv.weight.zero_()
        unit.attention.conv.bias.zero_()
    s = torch.randn(2, 5, 8, 8)
    refined, amap = unit(s)
    torch.testing.assert_close(amap, torch.full((2, 1, 8, 8), 0.5))
    torch.testing.assert_close(refined, s + s * 0.5)
