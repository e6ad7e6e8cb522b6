"""Behaviour of the Attention U-Net with grid attention gates (Oktay et al. 2018) beyond the generic contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import AttentionUnet

from attnseg_monai import get_network
from attnseg_monai.networks import count_parameters
from attnseg_monai.networks.blocks.grid_attention import GridAttentionGate
from attnseg_monai.networks.nets.grid_attention_unet import GridAttentionUNet

FEATURES = (4, 8, 8, 16)


def _net(spatial_dims: int = 2, **kwargs) -> GridAttentionUNet:
    torch.manual_seed(0)
    kwargs = {"features": FEATURES, **kwargs}
    return get_network("gridattentionunet", spatial_dims=spatial_dims, in_channels=1, out_channels=3, **kwargs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gate_output_is_transformed_alpha_times_x(spatial_dims):
    torch.manual_seed(0)
    gate = GridAttentionGate(spatial_dims, in_channels=6, gating_channels=10, inter_channels=5).eval()
    size = (8, 12, 4)[:spatial_dims]
    x = torch.randn(2, 6, *size)
    g = torch.randn(2, 10, *(s // 2 for s in size))
    with torch.no_grad():
        y, alpha = gate(x, g)
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        q = gate.psi(F.relu(gate.theta(x) + gate.phi(g)))  # eq. 1 on the gating grid
        expected_alpha = F.interpolate(torch.sigmoid(q), size=size, mode=mode, align_corners=False)
        expected_y = gate.output(alpha * x)
    assert gate.theta.stride == (2,) * spatial_dims and q.shape[2:] == g.shape[2:]
    assert alpha.shape == (2, 1, *size), "alpha lives on the skip's grid"
    assert alpha.min() >= 0 and alpha.max() <= 1
    torch.testing.assert_close(alpha, expected_alpha)
    torch.testing.assert_close(y, expected_y)
    assert y.shape == x.shape


def test_gate_depends_on_gating_signal_and_resamples_other_grids():
    torch.manual_seed(0)
    gate = GridAttentionGate(2, in_channels=4, gating_channels=6).eval()
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        a1 = gate.coefficients(x, torch.randn(1, 6, 8, 8))
        a2 = gate.coefficients(x, torch.randn(1, 6, 8, 8))
        a3 = gate.coefficients(x, torch.randn(1, 6, 2, 2))  # a coarser grid is resampled onto theta_x's grid
    assert not torch.allclose(a1, a2)
    assert a3.shape == a1.shape


def test_multi_head_gate_shapes_and_heads_are_independent():
    torch.manual_seed(0)
    gate = GridAttentionGate(3, in_channels=4, gating_channels=8, heads=2).eval()
    x, g = torch.randn(1, 4, 8, 8, 8), torch.randn(1, 8, 4, 4, 4)
    with torch.no_grad():
        y, alpha = gate(x, g)
    assert y.shape == x.shape and alpha.shape == (1, 2, 8, 8, 8)
    assert not torch.allclose(alpha[:, 0], alpha[:, 1])


def test_invalid_gate_arguments():
    for bad in ({"heads": 0}, {"sub_sample_factor": 0}, {"inter_channels": 0}, {"spatial_dims": 1}):
        kwargs = {"spatial_dims": 2, "in_channels": 4, "gating_channels": 4, **bad}
        with pytest.raises(ValueError):
            GridAttentionGate(**kwargs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gating_comes_from_the_coarser_level(spatial_dims):
    net = _net(spatial_dims, attention_levels=(0, 1, 2)).eval()
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for k, gate in enumerate(net.gates):
        hooks.append(gate.register_forward_hook(lambda m, args, out, k=k: seen.__setitem__(k, args)))
    decoded: list[torch.Tensor] = []
    for dec in net.decoder:
        hooks.append(dec.register_forward_hook(lambda m, args, out: decoded.append(out)))
    gating: list[torch.Tensor] = []
    hooks.append(net.gating.register_forward_hook(lambda m, args, out: gating.append(out)))
    size = (16, 24, 8)[:spatial_dims]
    with torch.no_grad():
        net(torch.randn(1, 1, *size))
    for h in hooks:
        h.remove()
    n_skips = len(FEATURES) - 1
    assert sorted(seen) == list(range(n_skips))
    for k, (x, g) in seen.items():
        level = n_skips - 1 - k
        assert x.shape[1:] == (FEATURES[level], *(s // 2**level for s in size))
        # g is one level coarser: half the skip's grid, the coarser level's width
        assert g.shape[1:] == (FEATURES[level + 1], *(s // 2 ** (level + 1) for s in size))
        expected = gating[0] if k == 0 else decoded[k - 1]
        assert g is expected, "deepest gate: bottleneck gating signal; others: decoder output one level down"


def test_gating_signal_is_conv_norm_act_of_the_bottleneck():
    net = _net()
    assert isinstance(net.gating.conv, torch.nn.Conv2d) and net.gating.conv.kernel_size == (1, 1)
    assert net.gating.conv.in_channels == FEATURES[-1]
    assert isinstance(net.gating.adn.N, torch.nn.BatchNorm2d) and isinstance(net.gating.adn.A, torch.nn.ReLU)
    # not gating the deepest skip leaves no unused gating layer behind
    assert isinstance(_net(attention_levels=(1,)).gating, torch.nn.Identity)


def test_default_levels_and_plain_unet():
    default = _net()
    assert default.attention_levels == (1, 2) and default.size_divisible_by == 8
    assert sum(isinstance(m, GridAttentionGate) for m in default.modules()) == 2
    plain = _net(attention_levels=())
    assert not any(isinstance(m, GridAttentionGate) for m in plain.modules())
    assert count_parameters(plain) < count_parameters(default)
    assert plain.attention_maps(torch.randn(1, 1, 16, 16)) == {}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_deep_supervision_heads_fuse_into_final(spatial_dims):
    net = _net(spatial_dims, deep_supervision=True).train()
    size = (16, 8, 8)[:spatial_dims]
    outs = net(torch.randn(2, 1, *size))
    assert isinstance(outs, list) and len(outs) == len(FEATURES)
    assert all(o.shape == (2, 3, *size) for o in outs)
    torch.testing.assert_close(outs[0], net.fuse(torch.cat(outs[1:], dim=1)))
    net.eval()
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, *size)
    # without the flag the fused output is returned in training too
    assert isinstance(_net(spatial_dims).train()(torch.randn(2, 1, *size)), torch.Tensor)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_attention_maps_keys_shapes_and_range(spatial_dims):
    net = _net(spatial_dims).train()
    size = (16, 24, 8)[:spatial_dims]
    x = torch.randn(2, 1, *size)
    maps = net.attention_maps(x)
    assert net.training, "attention_maps restores the training flag"
    assert list(maps) == ["level1", "level2"]
    for key, alpha in maps.items():
        level = int(key.removeprefix("level"))
        assert alpha.shape == (2, 1, *(s // 2**level for s in size))
        assert alpha.min() >= 0 and alpha.max() <= 1 and not alpha.requires_grad
    full = net.attention_maps(x, at_input_size=True)
    assert all(a.shape == (2, 1, *size) and a.min() >= 0 and a.max() <= 1 for a in full.values())
    with pytest.raises(ValueError):
        net.attention_maps(torch.randn(1, 1, *(s + 1 for s in size)))


def test_attention_maps_with_heads_and_top_level():
    net = _net(attention_levels=(0, 2), attention_heads=2)
    maps = net.attention_maps(torch.randn(1, 1, 16, 16))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {"level0": (1, 2, 16, 16), "level2": (1, 2, 4, 4)}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_against_monai_attention_unet(spatial_dims):
    """Both networks run on the same input and give the same output shape; they are different networks."""
    torch.manual_seed(0)
    ours = _net(spatial_dims).eval()
    monai_net = AttentionUnet(spatial_dims, 1, 3, channels=FEATURES, strides=(2,) * (len(FEATURES) - 1)).eval()
    x = torch.randn(1, 1, *(16, 8, 8)[:spatial_dims])
    with torch.no_grad():
        a, b = ours(x), monai_net(x)
    assert a.shape == b.shape == (1, 3, *x.shape[2:])
    assert count_parameters(ours) != count_parameters(monai_net)
    # MONAI gates every skip (top level too) at the skip's own resolution; ours gates all but the top one
    n_monai_gates = sum(type(m).__name__ == "AttentionBlock" for m in monai_net.modules())
    assert n_monai_gates == len(FEATURES) - 1 and len(ours.attention_levels) == len(FEATURES) - 2


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_the_experiment_switches_change_the_graph(spatial_dims):
    """The rows of configs/experiments/ as their JSON gives them: gates off (``[]``), gates on (``null``: all but the
    top level), two gates per level; a gate-free network's decoder takes the skip features unchanged."""
    from attnseg_monai.networks import network_config

    size = (16, 16, 8)[:spatial_dims]
    x = torch.randn(1, 1, *size)
    off, on, two = (_net(spatial_dims, **kw).eval() for kw in ({"attention_levels": []}, {}, {"attention_heads": 2}))
    gates = [[m for m in n.modules() if isinstance(m, GridAttentionGate)] for n in (off, on, two)]
    assert [len(g) for g in gates] == [0, len(FEATURES) - 2, len(FEATURES) - 2]
    assert all(g.heads == 2 and g.combine is not None for g in gates[2]) and all(g.combine is None for g in gates[1])
    assert count_parameters(off) < count_parameters(on) < count_parameters(two)
    assert network_config(off)["attention_levels"] == [] and network_config(on)["attention_levels"] is None
    # gates off: every skip reaches its decoder level as it is (the same tensor), and no coefficient is made
    seen = []
    hooks = [dec.register_forward_pre_hook(lambda m, a: seen.append(a[0])) for dec in off.decoder]
    with torch.no_grad():
        off(x)
    for h in hooks:
        h.remove()
    skips, h = [], x
    with torch.no_grad():
        for enc in off.encoder:
            h = enc(h)
            skips.append(h)
            h = off.pool(h)
    for k, cat in enumerate(seen):  # decoder inputs run deepest first: [skip, upsampled]
        skip = skips[len(skips) - 1 - k]
        torch.testing.assert_close(cat[:, : skip.shape[1]], skip)
    assert off.attention_maps(x) == {} and set(two.attention_maps(x)) == {"level1", "level2"}
    assert all(a.shape[1] == 2 for a in two.attention_maps(x).values())
