"""DANIE-specific checks (the generic contract is in test_contract.py)."""

from __future__ import annotations

import pytest
import torch

from attnseg_monai.networks import count_parameters, get_network
from attnseg_monai.networks.blocks.hierarchical_attention import HierarchicalAttentionBlock
from attnseg_monai.networks.nets.danie import DANIE

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
