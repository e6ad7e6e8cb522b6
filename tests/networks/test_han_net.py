"""Han-Net specifics: dense nested skips, learned fusion of the top-row heads, deep supervision, attention maps, and
the switches (seed-literal skips and heads, attention ablations) with the record that rebuilds them."""

from __future__ import annotations

import pytest
import torch

from attnseg_monai.bundle.record import BundleRecord
from attnseg_monai.networks import network_config
from attnseg_monai.networks.blocks.cbam import ChannelAttention
from attnseg_monai.networks.blocks.hybrid_attention import FullScaleNode, NestedNode, SkipSpatialAttention
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


# --- the switches: seed-literal skips and heads, attention ablations, and the record that rebuilds them -------------


def _capture(net: HanNet, x: torch.Tensor) -> tuple[list[torch.Tensor], dict[int, tuple]]:
    """The encoder outputs X^{0..L,0} and the inputs of every seed decoder node D_i by level."""
    encoder: list[torch.Tensor] = []
    nodes: dict[int, tuple] = {}
    for stage in net.encoder:
        stage.register_forward_hook(lambda m, a, out: encoder.append(out))
    depth = len(net.features) - 1
    for k, node in enumerate(net.decoder_levels):
        node.register_forward_pre_hook(lambda m, args, i=depth - 1 - k: nodes.__setitem__(i, args))
    with torch.no_grad():
        net(x)
    return encoder, nodes


def test_seed_skips_feed_each_decoder_level_its_skip_every_deeper_encoder_level_and_the_deeper_node():
    net = _net(skips="seed", heads="per_level", use_spatial_attention=False, use_channel_attention=False).eval()
    depth = len(FEATURES) - 1
    assert len(net.decoder) == 0 and len(net.decoder_levels) == depth, "one node per level, no UNet++ grid"
    encoder, nodes = _capture(net, torch.randn(1, 1, 16, 16))
    assert sorted(nodes) == list(range(depth))
    for i, (skip, deeper_encoder, deeper_decoder) in nodes.items():
        assert torch.equal(skip, encoder[i]), f"D_{i} gets X^{{{i},0}}"
        assert len(deeper_encoder) == depth - i, f"D_{i} gets every deeper encoder level {i + 1}..{depth}"
        for k, e in enumerate(deeper_encoder, start=i + 1):
            assert torch.equal(e, encoder[k]), f"D_{i} gets X^{{{k},0}}"
        if i < depth - 1:
            assert deeper_decoder is not None and deeper_decoder.shape[1:] == (
                FEATURES[i + 1],
                *(16 // 2 ** (i + 1),) * 2,
            )
        else:
            assert deeper_decoder is None, "the deepest node's only deeper level is the bottleneck"
        # its convolution takes the skip, one features[i]-channel map per deeper encoder level and the deeper node
        node = net.decoder_levels[depth - 1 - i]
        assert isinstance(node, FullScaleNode)
        expected = FEATURES[i] * (1 + (depth - i) + (1 if i < depth - 1 else 0))
        assert node.conv.conv0.conv.in_channels == expected
    # FEATURES = (4, 6, 8, 10): D_2 2*8, D_1 (1+2+1)*6, D_0 (1+3+1)*4
    assert [n.conv.conv0.conv.in_channels for n in net.decoder_levels] == [16, 24, 20]


def test_seed_skips_use_the_attended_sources():
    net = _net(skips="seed", heads="per_level").eval()
    encoder, nodes = _capture(net, torch.randn(1, 1, 16, 16))
    depth = len(FEATURES) - 1
    assert len(net.skip_attention) == 1 and len(net.skip_attention[0]) == depth, "one unit per encoder skip"
    with torch.no_grad():
        weights = net.channel_attention(encoder[depth])
        attended = [net.skip_attention[0][i](encoder[i])[0] for i in range(depth)]
    skip, deeper_encoder, _ = nodes[0]
    torch.testing.assert_close(skip, attended[0])
    for k in range(1, depth):
        torch.testing.assert_close(deeper_encoder[k - 1], attended[k])
    torch.testing.assert_close(deeper_encoder[-1], encoder[depth] * weights)


@pytest.mark.parametrize("skips", ["nested", "seed"])
def test_per_level_heads_work_at_each_levels_resolution_then_upsample_and_fuse(skips):
    net = _net(skips=skips, heads="per_level", deep_supervision=True).train()
    depth = len(FEATURES) - 1
    assert [h.in_channels for h in net.heads] == list(FEATURES[:depth])
    seen: list[torch.Tensor] = []
    for head in net.heads:
        head.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    ends: dict[int, torch.Tensor] = {}
    if skips == "nested":  # decoder level i's last node X^{i,L-i}
        for j, column in enumerate(net.decoder, start=1):
            column[-1].register_forward_hook(lambda m, a, out, i=depth - j: ends.__setitem__(i, out))
    x = torch.randn(2, 1, 16, 16)
    fused, *heads = net(x)
    assert fused.shape == (2, 2, 16, 16)
    for i, (inp, y) in enumerate(zip(seen, heads)):
        size = 16 // 2**i
        assert inp.shape[2:] == (size, size) and y.shape == (2, 2, size, size), f"head {i} at 1/{2**i}"
        if skips == "nested":
            assert torch.equal(inp, ends[i]), f"head {i} reads X^{{{i},{depth - i}}}"
    with torch.no_grad():
        up = [torch.nn.functional.interpolate(y, size=(16, 16), mode="bilinear", align_corners=False) for y in heads]
        torch.testing.assert_close(fused, net.fusion(torch.cat(up, dim=1)))
        torch.testing.assert_close(fused, torch.stack(up).mean(0))  # the fusion starts as the mean


def test_full_resolution_heads_need_the_nested_decoder():
    with pytest.raises(ValueError, match="per_level"):
        _net(skips="seed")
    with pytest.raises(ValueError, match=r"\('nested', 'seed'\)"):
        _net(skips="unet3+")
    with pytest.raises(ValueError, match=r"\('full_resolution', 'per_level'\)"):
        _net(heads="deep")


def test_without_spatial_attention_the_skips_pass_unrefined():
    net = _net(use_spatial_attention=False).eval()
    assert not any(isinstance(m, SkipSpatialAttention) for m in net.modules())
    encoder: list[torch.Tensor] = []
    for stage in net.encoder:
        stage.register_forward_hook(lambda m, a, out: encoder.append(out))
    inputs: dict[int, list] = {}
    for i, node in enumerate(net.decoder[0]):
        node.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0]))
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        net(x)
    for i, same_level in inputs.items():
        assert torch.equal(same_level[0], encoder[i]), f"X^{{{i},1}} gets X^{{{i},0}} as it is"
    assert "skip_0_0" not in net.attention_maps(x) and "bottleneck_channel" in net.attention_maps(x)


def test_without_channel_attention_the_bottleneck_passes_unweighted():
    net = _net(use_channel_attention=False).eval()
    assert net.channel_attention is None
    assert not any(isinstance(m, ChannelAttention) for m in net.modules())
    bottleneck: list[torch.Tensor] = []
    net.encoder[-1].register_forward_hook(lambda m, a, out: bottleneck.append(out))
    deeper: list[torch.Tensor] = []
    net.decoder[0][-1].register_forward_pre_hook(lambda m, args: deeper.append(args[1]))  # X^{L-1,1}
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        net(x)
    assert torch.equal(deeper[0], bottleneck[0])
    maps = net.attention_maps(x)
    assert "bottleneck_channel" not in maps and "skip_0_0" in maps


SWITCHES = [
    {},
    {"heads": "per_level"},
    {"skips": "seed", "heads": "per_level"},
    {"use_spatial_attention": False},
    {"use_channel_attention": False},
    {"deep_supervision": False},
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_the_record_holds_the_switches_and_rebuilds_the_same_network(switches):
    net = _net(**{"deep_supervision": True, **switches}).eval()
    config = network_config(net)
    for key in ("skips", "heads", "use_spatial_attention", "use_channel_attention", "deep_supervision"):
        assert key in config
    for key, value in switches.items():
        assert config[key] == value
    rebuilt = BundleRecord(bundle="hannet", network=config).build_network().eval()
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x))


def test_a_record_written_before_the_switches_rebuilds_the_shipped_network():
    config = network_config(_net())
    old = {
        k: v for k, v in config.items() if k not in ("skips", "heads", "use_spatial_attention", "use_channel_attention")
    }
    rebuilt = BundleRecord(bundle="hannet", network=old).build_network()
    assert network_config(rebuilt) == config
    assert rebuilt.nested and rebuilt.full_resolution_heads and rebuilt.channel_attention is not None
