"""MCSA-UNet specific checks: ablation switches, the CSA equations (1, 2, 5) and the attention read-out."""

from __future__ import annotations

import pytest
import torch
from monai.networks import convert_to_torchscript

from attnseg_monai import get_network
from attnseg_monai.networks.blocks.cbam import ChannelAttention, SpatialAttention
from attnseg_monai.networks.blocks.csa import CSABlock, CSAEncoderStage

FEATURES = (4, 4, 8, 8, 16)
REDUCTION = 2
KERNEL = 7
ROWS = {  # Tab. 1 of the paper: (use_channel_attention, use_spatial_attention, use_residual)
    "unet": (False, False, False),
    "ca": (True, False, False),
    "sa": (False, True, False),
    "res": (False, False, True),
    "all": (True, True, True),
}


def _net(spatial_dims: int, row: str, **kwargs):
    ca, sa, res = ROWS[row]
    return get_network(
        "mcsaunet",
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=2,
        features=FEATURES,
        reduction=REDUCTION,
        spatial_kernel_size=KERNEL,
        use_channel_attention=ca,
        use_spatial_attention=sa,
        use_residual=res,
        **kwargs,
    )


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _expected_params(spatial_dims: int, row: str, norm: str | None, in_ch: int = 1, out_ch: int = 2) -> int:
    """Parameter count written out from the architecture description (independent of the implementation)."""
    k3 = 3**spatial_dims
    norm_p = 2 if norm == "batch" else 0  # batch norm: weight + bias; without norm the conv has a bias

    def conv3(cin: int, cout: int) -> int:
        return k3 * cin * cout + (norm_p * cout if norm else cout)

    ins = (in_ch,) + FEATURES[:-1]
    total = sum(conv3(i, o) + conv3(o, o) for i, o in zip(ins, FEATURES))  # encoder
    for deep, shallow in zip(FEATURES[:0:-1], FEATURES[-2::-1]):  # up-conv (2x2) + two 3x3 convs
        total += 2**spatial_dims * deep * shallow + shallow + conv3(2 * shallow, shallow) + conv3(shallow, shallow)
    total += FEATURES[0] * out_ch + out_ch  # 1x1 head
    ca, sa, res = ROWS[row]
    for i, c in zip(ins, FEATURES):
        if ca:
            hidden = max(c // REDUCTION, 4)
            total += 2 * c * hidden + hidden + c  # shared MLP as two 1x1 convs
        if sa:
            total += 2 * KERNEL**spatial_dims + 1  # 2 -> 1 channel k x k conv
        if res and not (ca or sa):
            total += i * c + (norm_p * c if norm else c)  # 1x1 projection shortcut
    return total


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("norm", ["batch", None])
@pytest.mark.parametrize("row", list(ROWS))
def test_ablation_rows_have_expected_parameter_counts(spatial_dims: int, norm: str | None, row: str):
    net = _net(spatial_dims, row, norm=norm)
    assert _n_params(net) == _expected_params(spatial_dims, row, norm)


def test_all_switches_off_is_a_plain_unet():
    plain, full = _net(2, "unet").eval(), _net(2, "all").eval()
    kinds = (CSABlock, ChannelAttention, SpatialAttention)
    assert not any(isinstance(m, kinds) for m in plain.modules())
    assert all(stage.csa is None and stage.shortcut is None for stage in plain.encoder)
    assert _n_params(plain) < _n_params(full)
    x = torch.randn(2, 1, 16, 32)
    with torch.no_grad():
        assert plain(x).shape == full(x).shape == (2, 2, 16, 32)
    assert plain.attention_maps(x) == {}


def test_single_switch_rows_add_the_right_modules():
    ca, sa, res = _net(2, "ca"), _net(2, "sa"), _net(2, "res")
    assert sum(isinstance(m, ChannelAttention) for m in ca.modules()) == 5
    assert not any(isinstance(m, SpatialAttention) for m in ca.modules())
    assert sum(isinstance(m, SpatialAttention) for m in sa.modules()) == 5
    assert not any(isinstance(m, ChannelAttention) for m in sa.modules())
    assert all(stage.csa is None and stage.shortcut is not None for stage in res.encoder)
    base = _n_params(_net(2, "unet"))
    assert len({base, _n_params(ca), _n_params(sa), _n_params(res)}) == 4


def _forced_csa(channel_bias: torch.Tensor, spatial_bias: float, use_residual: bool = True) -> CSABlock:
    """A CSA block whose maps are constants: M_FC = sigmoid(channel_bias), M_FS = sigmoid(spatial_bias)."""
    block = CSABlock(2, channels=channel_bias.numel(), reduction=2, use_residual=use_residual)
    with torch.no_grad():
        last = block.channel_attention.mlp[-1]
        last.weight.zero_()
        last.bias.copy_(channel_bias / 2)  # summed over the avg and max branches
        block.spatial_attention.conv.weight.zero_()
        block.spatial_attention.conv.bias.fill_(spatial_bias)
    return block


def test_csa_residual_equation_with_forced_maps():
    torch.manual_seed(0)
    bias = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0, 0.25])
    f1 = torch.randn(2, 6, 8, 8)
    weight = torch.sigmoid(bias).view(1, -1, 1, 1) * torch.sigmoid(torch.tensor(0.7))
    out = _forced_csa(bias, 0.7)(f1)
    torch.testing.assert_close(out - f1, weight * f1)  # eq. 5 with A_FS = M_FS * M_FC * F1 (eqs. 1, 2)
    torch.testing.assert_close(_forced_csa(bias, 0.7, use_residual=False)(f1), weight * f1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_csa_equations_with_learned_maps(spatial_dims: int):
    torch.manual_seed(0)
    block = CSABlock(spatial_dims, channels=8, reduction=2, spatial_kernel_size=3)
    f1 = torch.randn((2, 8) + (6,) * spatial_dims)
    out, m_fc, m_fs = block.forward_with_maps(f1)
    a_fc = block.channel_attention(f1) * f1  # eq. 1
    torch.testing.assert_close(m_fc, block.channel_attention(f1))
    torch.testing.assert_close(m_fs, block.spatial_attention(a_fc))  # eq. 4 acts on A_FC (CBAM order)
    a_fs = m_fs * a_fc  # eq. 2
    torch.testing.assert_close(out - f1, a_fs, rtol=1e-5, atol=1e-6)  # eq. 5
    assert m_fc.shape == (2, 8) + (1,) * spatial_dims and m_fs.shape == (2, 1) + (6,) * spatial_dims


def test_residual_without_attention_is_a_projected_shortcut():
    torch.manual_seed(0)
    stage = CSAEncoderStage(2, 3, 5, use_channel_attention=False, use_spatial_attention=False).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(stage(x), stage.convs(x) + stage.shortcut(x))
    conv = stage.shortcut.conv
    assert conv.kernel_size == (1, 1) and (conv.in_channels, conv.out_channels) == (3, 5)


def test_csa_block_needs_an_attention_branch():
    with pytest.raises(ValueError, match="CSAEncoderStage"):
        CSABlock(2, 8, use_channel_attention=False, use_spatial_attention=False)
    with pytest.raises(ValueError):
        CSABlock(2, 8, spatial_kernel_size=6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_attention_maps_are_in_unit_interval(spatial_dims: int):
    torch.manual_seed(0)
    net = _net(spatial_dims, "all").train()
    size = (32, 48) if spatial_dims == 2 else (16, 32, 16)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    maps = net.attention_maps(torch.randn(2, 1, *size) * 5)
    assert net.training, "attention_maps restores the training flag"
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items()), "no state is changed"
    assert sorted(maps) == sorted(f"level{k}.{m}" for k in range(1, 6) for m in ("channel", "spatial"))
    for k, c in enumerate(FEATURES, start=1):
        scale = 2 ** (k - 1)
        assert maps[f"level{k}.channel"].shape == (2, c) + (1,) * spatial_dims
        assert maps[f"level{k}.spatial"].shape == (2, 1, *(s // scale for s in size))
    for value in maps.values():
        assert value.min() >= 0.0 and value.max() <= 1.0 and not value.requires_grad
    ca_only = _net(spatial_dims, "ca").attention_maps(torch.randn(1, 1, *size))
    assert sorted(ca_only) == [f"level{k}.channel" for k in range(1, 6)]
    assert _net(spatial_dims, "res").attention_maps(torch.randn(1, 1, *size)) == {}


def test_literal_up_mode_nearest_then_2x2_conv():
    torch.manual_seed(0)
    net = _net(2, "all", up_mode="nearest").eval()
    assert _n_params(net) == _n_params(_net(2, "all"))  # same 2x2 kernels, another upsampling
    x = torch.randn(1, 1, 16, 32)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 2, 16, 32) and torch.isfinite(out).all()
    convert_to_torchscript(net, verify=True, inputs=[x], device="cpu", rtol=1e-4, atol=1e-4)


def test_default_widths_are_unet():
    net = get_network("mcsaunet", spatial_dims=2, in_channels=3, out_channels=2)
    assert net.features == (64, 128, 256, 512, 1024) and net.size_divisible_by == 16
    widths = [stage.convs.conv1.conv.out_channels for stage in net.encoder]
    assert widths == [64, 128, 256, 512, 1024]
    hidden = [stage.csa.channel_attention.mlp[0].out_channels for stage in net.encoder]
    assert hidden == [c // 16 for c in widths]  # reduction 16
    assert all(stage.csa.spatial_attention.conv.kernel_size == (7, 7) for stage in net.encoder)
