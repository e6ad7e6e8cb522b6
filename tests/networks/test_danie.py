"""DANIE-specific checks (the generic contract is in test_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch

from attnseg_monai.networks import count_parameters, get_network, network_config
from attnseg_monai.networks.blocks.hierarchical_attention import (
    ConvStem,
    DynamicCalibration,
    HierarchicalAttentionBlock,
)
from attnseg_monai.networks.blocks.joint_preservation import JointPreservation, NonLocalBlock
from attnseg_monai.networks.blocks.stream_fusion import AdditionFusion, ConcatenationFusion
from attnseg_monai.networks.blocks.transformer import PatchEmbedding, SpatialReductionAttention, TransformerBlock
from attnseg_monai.networks.nets.danie import DANIE, FUSIONS, SAP_ATTENTIONS
from tests.networks.cases.danie import ABLATIONS

# 4 stages, patch 4 (the default layout), tiny widths.
TINY4 = {"embed_dims": (8, 16, 16, 24), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 3), "reduction": 4}


def test_img_size_validation_lists_valid_sizes():
    net = DANIE(2, 1, 9, img_size=224, **TINY4)
    assert net.size_divisible_by == 32 and net.img_size == (224, 224)
    assert DANIE(3, 1, 2, img_size=(32, 64, 96), **TINY4).img_size == (32, 64, 96)
    with pytest.raises(ValueError) as err:
        DANIE(2, 1, 9, img_size=225, **TINY4)
    msg = str(err.value)
    assert "32, 64, 96" in msg and "224" in msg and "256" in msg
    with pytest.raises(ValueError, match="multiple of 16"):
        DANIE(2, 1, 9, img_size=(224, 40), patch_size=2, **TINY4)  # 40 is not a multiple of 2 * 2**3
    with pytest.raises(ValueError, match="valid sizes: 32"):
        DANIE(2, 1, 9, img_size=(224, 224, 224), **TINY4)


@pytest.mark.parametrize("patch_size", [0, -4, 3, 6, 2.0, True])
def test_patch_size_must_be_power_of_two(patch_size):
    with pytest.raises(ValueError, match="power of two"):
        DANIE(2, 1, 2, patch_size=patch_size, **TINY4)


def test_patch_size_incompatible_with_img_size():
    DANIE(2, 1, 2, img_size=96, patch_size=4, **TINY4)  # 96 = 3 * 32
    with pytest.raises(ValueError, match="patch_size=8"):
        DANIE(2, 1, 2, img_size=96, patch_size=8, **TINY4)  # needs multiples of 64


def test_heads_must_divide_widths():
    with pytest.raises(ValueError) as err:
        DANIE(2, 1, 2, embed_dims=(32, 64, 160, 256), num_heads=(1, 2, 3, 8))
    assert "embed_dims[2]=160" in str(err.value) and "valid head counts" in str(err.value)
    assert "[1, 2, 4, 5, 8, 10" in str(err.value)


def test_per_stage_lengths_and_sr_ratios_validated():
    with pytest.raises(ValueError, match="one entry per stage"):
        DANIE(2, 1, 2, embed_dims=(8, 16, 16, 24), depths=(1, 1))
    with pytest.raises(ValueError, match=r"valid: \[1, 2\]"):
        DANIE(2, 1, 2, **{**TINY4, "sr_ratios": (8, 4, 4, 1)})  # stage 2's smallest grid is 2
    default = DANIE(2, 1, 2, **TINY4)
    assert default.sr_ratios == (8, 4, 2, 1)
    assert DANIE(2, 1, 2, embed_dims=(32, 64, 96)).num_heads == (1, 2, 3)


def test_presets_build_with_increasing_parameter_counts():
    names = ("danie_small", "danie_base", "danie_large")
    nets = [get_network(name, spatial_dims=2, in_channels=1, out_channels=9) for name in names]
    counts = [count_parameters(n) for n in nets]
    assert all(isinstance(n, DANIE) for n in nets)
    assert counts[0] < counts[1] < counts[2], counts
    assert nets[0].embed_dims == (32, 64, 160, 256) and nets[1].embed_dims == nets[2].embed_dims == (64, 128, 320, 512)
    assert sum(nets[2].depths) > sum(nets[1].depths)
    override = get_network("danie_large", spatial_dims=3, in_channels=1, out_channels=2, patch_size=2)
    assert override.depths == (3, 4, 6, 3) and override.size_divisible_by == 16


def test_forward_224_2d():
    torch.manual_seed(0)
    net = DANIE(2, 1, 9, img_size=224, **TINY4).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 224, 224))
    assert out.shape == (1, 9, 224, 224) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.zeros(1, 1, 224, 200))


def test_forward_3d_default_layout():
    net = DANIE(3, 2, 3, **TINY4).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 2, 32, 64, 32))
    assert out.shape == (1, 3, 32, 64, 32)


def test_hap_applies_channel_then_spatial_attention():
    torch.manual_seed(0)
    block = HierarchicalAttentionBlock(2, 8, 8, reduction=2).eval()
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    block.channel_attention.register_forward_hook(lambda m, i, o: calls.append(("channel", i[0], o)))
    block.spatial_attention.register_forward_hook(lambda m, i, o: calls.append(("spatial", i[0], o)))
    with torch.no_grad():
        out, channel_map, spatial_map, gate = block(torch.randn(2, 8, 8, 8))
    assert [c[0] for c in calls] == ["channel", "spatial"]
    (_, feat, mc), (_, refined, ms) = calls
    torch.testing.assert_close(mc, channel_map)
    torch.testing.assert_close(ms, spatial_map)
    # spatial attention sees the channel-refined features; the calibrated sum is added back to the features
    torch.testing.assert_close(refined, feat * mc)
    torch.testing.assert_close(out, feat + gate * (refined * ms))
    assert gate.shape == (2, 8, 1, 1) and 0 <= gate.min() and gate.max() <= 1
    # the gate depends on the input (dynamic calibration), not a fixed parameter
    with torch.no_grad():
        other_gate = block(3 * torch.randn(2, 8, 8, 8))[3]
    assert not torch.allclose(gate, other_gate)


def test_joint_preservation_output_per_stage():
    torch.manual_seed(0)
    net = DANIE(2, 1, 2, **TINY4).eval()
    captured: dict[int, tuple] = {}
    for i, stage in enumerate(net.stages):
        stage.joint_preservation.register_forward_hook(lambda m, inp, out, i=i: captured.update({i: (inp, out)}))
    with torch.no_grad():
        net(torch.randn(2, 1, 64, 96))
    assert sorted(captured) == [0, 1, 2, 3]
    for i, ((sap, hap), (fused, es_gate)) in captured.items():
        grid = (64 // (4 * 2**i), 96 // (4 * 2**i))
        assert sap.shape == hap.shape == fused.shape == (2, net.embed_dims[i], *grid)
        assert es_gate.shape == (2, net.embed_dims[i], 1, 1)
        jp = net.stages[i].joint_preservation
        with torch.no_grad():  # aggregation = conv(ES(sap)) + conv(EH(hap)): both streams contribute
            expected = jp.aggregate_sap(sap * jp.es(sap)) + jp.aggregate_hap(jp.eh(hap))
            torch.testing.assert_close(fused, expected)
            assert not torch.allclose(jp(sap, torch.zeros_like(hap))[0], fused)
            assert not torch.allclose(jp(torch.zeros_like(sap), hap)[0], fused)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_attention_maps(spatial_dims):
    net = DANIE(spatial_dims, 1, 2, **TINY4).train()
    size = (32, 64) if spatial_dims == 2 else (32, 32, 64)
    maps = net.attention_maps(torch.randn(2, 1, *size))
    assert net.training, "attention_maps restores the training flag"
    assert len(maps) == 4 * 3 + 4  # per stage: (channel, spatial, calibration) per HAP block, plus ES
    for i, c in enumerate(net.embed_dims):
        grid = tuple(s // (4 * 2**i) for s in size)
        assert maps[f"stage{i}.hap0.spatial"].shape == (2, 1, *grid)
        for key in ("hap0.channel", "hap0.calibration", "es"):
            assert maps[f"stage{i}.{key}"].shape == (2, c) + (1,) * spatial_dims
    for value in maps.values():
        assert value.min() >= 0 and value.max() <= 1


# ---------------------------------------------------------------------------------------------------------------
# the seed's ablations as switches: each changes the graph as documented, and the record keeps it


def _modules(net: torch.nn.Module, kind: type) -> list[torch.nn.Module]:
    return [m for m in net.modules() if isinstance(m, kind)]


def test_default_switches_are_danie_as_described():
    net = DANIE(2, 1, 2, **TINY4)
    assert (net.streams, net.hap_order, net.dynamic_calibration, net.fusion, net.sap_attention) == (
        "both",
        "channel_first",
        True,
        "joint_preservation",
        "spatial_reduction",
    )
    assert net.stem is not None and all(isinstance(s.joint_preservation, JointPreservation) for s in net.stages)
    assert all(s.fusion is None for s in net.stages)


@pytest.mark.parametrize(
    "bad,valid",
    [
        ({"streams": "all"}, "'both', 'sap', 'hap'"),
        ({"hap_order": "spatial"}, "'channel_first', 'spatial_first'"),
        ({"fusion": "sum"}, "'joint_preservation', 'add', 'concat'"),
        ({"sap_attention": "linear"}, "'spatial_reduction', 'full'"),
        ({"dynamic_calibration": "false"}, "true or false"),
    ],
)
def test_switch_values_are_validated_with_the_valid_ones_listed(bad, valid):
    with pytest.raises(ValueError) as err:
        DANIE(2, 1, 2, **TINY4, **bad)
    assert valid in str(err.value) and next(iter(bad)) in str(err.value)


def test_streams_sap_builds_no_hap_stream():
    torch.manual_seed(0)
    both, sap = DANIE(2, 1, 2, **TINY4), DANIE(2, 1, 2, streams="sap", **TINY4)
    assert sap.stem is None, "the HAP embedding layer (conv stem) belongs to the HAP stream"
    for stage in sap.stages:
        assert stage.hap_blocks is None and stage.joint_preservation is None and stage.fusion is None
        assert isinstance(stage.patch_embed, PatchEmbedding)
    assert not _modules(sap, (HierarchicalAttentionBlock, ConvStem, JointPreservation, NonLocalBlock))
    assert len(_modules(sap, TransformerBlock)) == len(_modules(both, TransformerBlock)) == 4
    # the decoder's steps above the patch grid (1/2 and full resolution for patch 4) have no skip
    assert [b.conv.conv1.conv.in_channels for b in sap.decoder[-2:]] == [both.stem.levels[0][0].conv.out_channels] * 2
    assert count_parameters(sap) < count_parameters(both)
    x = torch.randn(2, 1, 64, 32)
    assert sap.attention_maps(x) == {}, "no HAP maps, no ES gate"
    captured: list[tuple] = []
    sap.stages[0].register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        assert sap.eval()(x).shape == (2, 2, 64, 32)
    sap_map, hap_map, fused, maps = captured[0]
    assert hap_map is None and fused is sap_map and maps == {}, "the stage's skip is the SAP map itself"


def test_streams_hap_builds_no_sap_stream():
    torch.manual_seed(0)
    both, hap = DANIE(2, 1, 2, **TINY4), DANIE(2, 1, 2, streams="hap", **TINY4)
    assert isinstance(hap.stem, ConvStem)
    for stage in hap.stages:
        assert stage.patch_embed is None and stage.sap_blocks is None and stage.sap_norm is None
        assert stage.joint_preservation is None and stage.fusion is None
    assert not _modules(hap, (PatchEmbedding, TransformerBlock, SpatialReductionAttention, JointPreservation))
    assert len(_modules(hap, HierarchicalAttentionBlock)) == len(_modules(both, HierarchicalAttentionBlock)) == 4
    assert count_parameters(hap) < count_parameters(both)
    x = torch.randn(2, 1, 32, 64)
    maps = hap.attention_maps(x)
    assert sorted(maps) == sorted(f"stage{i}.hap0.{k}" for i in range(4) for k in ("channel", "spatial", "calibration"))
    captured: list[tuple] = []
    hap.stages[1].register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        hap.eval()(x)
    sap_map, hap_map, fused, _ = captured[0]
    assert sap_map is None and fused is hap_map, "the stage's skip is the HAP map itself"


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_hap_order_spatial_first_swaps_the_attentions(spatial_dims):
    torch.manual_seed(0)
    block = HierarchicalAttentionBlock(spatial_dims, 8, 8, reduction=2, order="spatial_first").eval()
    default = HierarchicalAttentionBlock(spatial_dims, 8, 8, reduction=2)
    assert count_parameters(block) == count_parameters(default), "the same modules, in the other order"
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    block.channel_attention.register_forward_hook(lambda m, i, o: calls.append(("channel", i[0], o)))
    block.spatial_attention.register_forward_hook(lambda m, i, o: calls.append(("spatial", i[0], o)))
    with torch.no_grad():
        out, channel_map, spatial_map, gate = block(torch.randn(2, 8, *([8] * spatial_dims)))
    assert [c[0] for c in calls] == ["spatial", "channel"]
    (_, feat, ms), (_, refined, mc) = calls
    torch.testing.assert_close(refined, feat * ms)  # channel attention sees the spatially refined features
    torch.testing.assert_close(out, feat + gate * (refined * mc))
    assert channel_map.shape == (2, 8) + (1,) * spatial_dims and spatial_map.shape == (2, 1) + (8,) * spatial_dims
    net = DANIE(spatial_dims, 1, 2, hap_order="spatial_first", **TINY4)
    assert all(not b.channel_first for b in _modules(net, HierarchicalAttentionBlock))
    assert count_parameters(net) == count_parameters(DANIE(spatial_dims, 1, 2, **TINY4))


def test_dynamic_calibration_off_adds_the_attended_features_without_a_gate():
    torch.manual_seed(0)
    block = HierarchicalAttentionBlock(2, 8, 8, reduction=2, dynamic_calibration=False).eval()
    assert block.calibration is None
    calls: list[torch.Tensor] = []
    block.spatial_attention.register_forward_hook(lambda m, i, o: calls.extend([i[0], o]))
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        out, _, _, gate = block(x)
        feat = block.act(block.conv(x) + block.shortcut(x))
    refined, ms = calls
    assert gate is None
    torch.testing.assert_close(out, feat + refined * ms)  # the features plus the attended features, ungated
    net = DANIE(2, 1, 2, dynamic_calibration=False, **TINY4)
    default = DANIE(2, 1, 2, **TINY4)
    assert not _modules(net, DynamicCalibration) and len(_modules(default, DynamicCalibration)) == 4
    calibration = sum(count_parameters(m) for m in _modules(default, DynamicCalibration))
    assert count_parameters(net) == count_parameters(default) - calibration
    maps = net.attention_maps(torch.randn(2, 1, 32, 32))
    assert not [k for k in maps if k.endswith("calibration")] and "stage0.hap0.spatial" in maps


@pytest.mark.parametrize("fusion,module", [("add", AdditionFusion), ("concat", ConcatenationFusion)])
def test_fusion_by_addition_or_concatenation_replaces_joint_preservation(fusion, module):
    torch.manual_seed(0)
    net = DANIE(2, 1, 2, fusion=fusion, **TINY4).eval()
    for stage in net.stages:
        assert type(stage.fusion) is module and stage.joint_preservation is None
    assert not _modules(net, (JointPreservation, NonLocalBlock))
    if fusion == "concat":  # concatenation, then a 1x1 convolution back to the stage width
        conv = net.stages[2].fusion.project.conv
        assert conv.kernel_size == (1, 1) and (conv.in_channels, conv.out_channels) == (32, 16)
    captured: dict[int, tuple] = {}
    for i, stage in enumerate(net.stages):
        stage.fusion.register_forward_hook(lambda m, inp, out, i=i: captured.update({i: (inp, out)}))
    with torch.no_grad():
        maps = net.attention_maps(torch.randn(2, 1, 64, 32))
    assert not [k for k in maps if k.endswith(".es")], "no ES gate without Joint Preservation"
    assert sorted(captured) == [0, 1, 2, 3]
    for i, ((sap, hap), fused) in captured.items():
        with torch.no_grad():
            expected = sap + hap if fusion == "add" else net.stages[i].fusion.project(torch.cat([sap, hap], 1))
        torch.testing.assert_close(fused, expected)
        assert fused.shape == sap.shape == hap.shape
    counts = {f: count_parameters(DANIE(2, 1, 2, fusion=f, **TINY4)) for f in FUSIONS}
    assert counts["add"] < counts["concat"] < counts["joint_preservation"], counts


def _attention_lengths(net: DANIE, x: torch.Tensor) -> dict[int, tuple[int, int]]:
    """Per stage: (number of queries, number of keys/values) of the first transformer block's attention."""
    found: dict[int, dict[str, int]] = {}
    for i, stage in enumerate(net.stages):
        attn = stage.sap_blocks[0].attn
        lengths = found.setdefault(i, {})
        for name, layer in (("q", attn.q), ("kv", attn.kv)):
            layer.register_forward_hook(lambda m, inp, out, d=lengths, n=name: d.update({n: inp[0].shape[1]}))
    with torch.no_grad():
        net.eval()(x)
    return {i: (d["q"], d["kv"]) for i, d in found.items()}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_full_attention_attends_to_every_token(spatial_dims):
    size = (32, 64) if spatial_dims == 2 else (32, 32, 64)
    x = torch.randn(1, 1, *size)
    nets = {a: DANIE(spatial_dims, 1, 2, sap_attention=a, **TINY4) for a in SAP_ATTENTIONS}
    lengths = {a: _attention_lengths(net, x) for a, net in nets.items()}
    for i in range(4):
        tokens = math.prod(s // (4 * 2**i) for s in size)
        ratio = (8, 4, 2, 1)[i]
        assert lengths["full"][i] == (tokens, tokens), "keys/values: every token of the stage"
        assert lengths["spatial_reduction"][i] == (tokens, tokens // ratio**spatial_dims)
    assert [s.sap_blocks[0].attn.reduce for s in nets["full"].stages] == [False] * 4
    assert [s.sap_blocks[0].attn.reduce for s in nets["spatial_reduction"].stages] == [True, True, True, False]
    for net in nets.values():  # JP's non-local block keeps its key/value pooling by sr_ratios either way
        assert [s.joint_preservation.eh.pool_kv for s in net.stages] == [True, True, True, False]
    assert count_parameters(nets["full"]) < count_parameters(nets["spatial_reduction"]), "no reduction convolutions"


SWITCHES = ("streams", "hap_order", "dynamic_calibration", "fusion", "sap_attention")


@pytest.mark.parametrize("variant", sorted(ABLATIONS))
def test_network_config_records_every_switch(variant):
    """The weights' record holds ``network_config``: it must name the switches so a checkpoint rebuilds its network."""
    torch.manual_seed(0)
    net = DANIE(2, 1, 3, **TINY4, **ABLATIONS[variant])
    config = network_config(net)
    assert set(SWITCHES) <= set(config)
    assert {k: config[k] for k in ABLATIONS[variant]} == ABLATIONS[variant]
    rebuilt = DANIE(**{k: v for k, v in config.items() if k != "_target_"})
    assert network_config(rebuilt) == config
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    if variant not in ("spatial_first",):  # the order changes the computation, not the weights
        assert set(net.state_dict()) != set(DANIE(2, 1, 3, **TINY4).state_dict())


def test_a_config_without_the_switches_builds_the_default_network():
    """Records written before the switches existed hold none of them: they rebuild today's default network."""
    config = network_config(DANIE(2, 1, 3, **TINY4))
    old = {k: v for k, v in config.items() if k not in (*SWITCHES, "_target_")}
    assert network_config(DANIE(**old)) == config


# ---------------------------------------------------------------------------------------------------------------
# the deepest stage's batch norm at the smallest valid size


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_batch_of_one_at_the_smallest_size_names_the_smallest_trainable_size(spatial_dims):
    net = get_network("danie_small", spatial_dims=spatial_dims, in_channels=1, out_channels=9).train()
    assert net.size_divisible_by == 32
    with pytest.raises(ValueError) as err:
        net(torch.zeros(1, 1, *([32] * spatial_dims)))
    msg = str(err.value)
    assert "batch norm" in msg and "64" in msg and str([64] + [32] * (spatial_dims - 1)) in msg
    assert "Expected more than 1 value" not in msg
    tiny = DANIE(spatial_dims, 1, 2, **TINY4).train()
    with pytest.raises(ValueError, match="smallest trainable"):
        tiny(torch.zeros(1, 1, *([32] * spatial_dims)))
    for shape in ((1, 1, 64, *([32] * (spatial_dims - 1))), (2, 1, *([32] * spatial_dims))):
        tiny(torch.randn(shape)).sum().backward()  # one size of 64, or a batch of 2: trains
    with torch.no_grad():
        tiny.eval()(torch.zeros(1, 1, *([32] * spatial_dims)))  # eval mode uses the running statistics


def test_instance_norm_at_the_smallest_size_is_refused_in_both_modes():
    net = DANIE(2, 1, 2, norm="instance", **TINY4).eval()
    with pytest.raises(ValueError, match="instance norm"):
        net(torch.zeros(2, 1, 32, 32))
    with torch.no_grad():
        net(torch.zeros(1, 1, 32, 64))
    grouped = DANIE(2, 1, 2, norm=("group", {"num_groups": 4}), **TINY4).train()
    grouped(torch.zeros(1, 1, 32, 32)).sum().backward()
    sap_add = DANIE(2, 1, 2, streams="sap", **TINY4).train()  # nothing normalises the deepest grid by batch
    assert not sap_add.bottleneck_batch_norm
    sap_add(torch.zeros(1, 1, 32, 32)).sum().backward()
