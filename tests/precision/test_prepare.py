"""Batch-norm folding exactness and channels-last preparation, 2D and 3D."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import BasicUNet
from torch import nn

from attnseg_monai.networks import get_network
from attnseg_monai.precision import FastNetwork, PrecisionPolicy, fold_batch_norm, prepare_for_inference

FOLD_ONLY = PrecisionPolicy("fp32", channels_last=False, fold_batch_norm=True)


def _randomise_batch_norms(net: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return net.eval()


def _batch_norms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@pytest.mark.parametrize("dims", [2, 3])
def test_folding_is_exact_in_float32(dims):
    torch.manual_seed(dims)
    net = _randomise_batch_norms(
        get_network("hannet", spatial_dims=dims, in_channels=2, out_channels=3, features=(4, 8))
    )
    x = torch.rand(2, 2, *([16] * dims))
    with torch.no_grad():
        ref = net(x)
        fast = prepare_for_inference(net, FOLD_ONLY)
        out = fast(x)
    assert fast.batch_norms_folded == _batch_norms(net) > 0
    assert _batch_norms(fast) == 0 and _batch_norms(net) > 0  # the original network is untouched
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_folding_sequential_patterns_and_what_it_leaves():
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.ConvTranspose2d(4, 5, 2, stride=2),
        nn.BatchNorm2d(5),
        Convolution(2, 5, 6, norm="batch", act="prelu"),
        nn.BatchNorm2d(6),  # after an activation: not foldable, stays
    )
    _randomise_batch_norms(seq)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        ref = seq(x)
        assert fold_batch_norm(seq) == 3
        assert torch.allclose(seq(x), ref, atol=1e-5, rtol=1e-5)
    assert _batch_norms(seq) == 1
    with pytest.raises(ValueError, match="eval"):
        fold_batch_norm(nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)).train())


def test_folding_a_monai_reference_network():
    net = _randomise_batch_norms(BasicUNet(2, 1, 2, features=(4, 4, 8, 8, 16, 4), norm="batch"))
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        ref = net(x)
        fast = prepare_for_inference(net, FOLD_ONLY)
        assert torch.allclose(fast(x), ref, atol=1e-5, rtol=1e-5)
    assert fast.batch_norms_folded == _batch_norms(net)


@pytest.mark.parametrize(("dims", "fmt"), [(2, torch.channels_last), (3, torch.channels_last_3d)])
def test_bf16_channels_last_preparation(dims, fmt):
    net = _randomise_batch_norms(
        get_network("hannet", spatial_dims=dims, in_channels=1, out_channels=2, features=(4, 8))
    )
    fast = prepare_for_inference(net, PrecisionPolicy("bf16", channels_last=True, fold_batch_norm=True))
    assert isinstance(fast, FastNetwork) and fast.size_divisible_by == net.size_divisible_by
    convs = [m for m in fast.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.weight.ndim == dims + 2]
    assert convs and all(c.weight.dtype == torch.bfloat16 for c in convs)
    assert all(c.weight.is_contiguous(memory_format=fmt) for c in convs if min(c.weight.shape[2:]) > 1)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the original stays float32
    x = torch.rand(1, 1, *([8] * dims))
    with torch.no_grad():
        out, ref = fast(x), net(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape and out.is_contiguous()
    assert torch.allclose(out, ref, atol=0.1 * float(ref.abs().max()) + 1e-3)
    maps = fast.attention_maps(x)
    assert maps and all(m.dtype == torch.float32 for m in maps.values())


def test_reference_policy_leaves_the_network_as_it_is():
    net = get_network("hannet", spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8)).train()
    fast = prepare_for_inference(net, PrecisionPolicy("fp32"), copy_network=False)
    assert fast.module is net and not net.training and fast.batch_norms_folded == 0 and _batch_norms(net) > 0
    with pytest.raises(ValueError, match="nn.Module"):
        prepare_for_inference(lambda x: x, PrecisionPolicy("fp32"))


@pytest.mark.parametrize("dims", [2, 3])
def test_instance_norm_runs_as_the_equal_group_norm(dims):
    from attnseg_monai.precision import instance_norm_to_group_norm

    torch.manual_seed(0)
    net = BasicUNet(dims, 1, 2, features=(4, 4, 8, 8, 16, 4)).eval()  # MONAI's default: affine instance norm
    for m in net.modules():
        if isinstance(m, nn.modules.instancenorm._InstanceNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.rand(2, 1, *([32] * dims))
    with torch.no_grad():
        ref = net(x)
        fast = prepare_for_inference(net, PrecisionPolicy("fp32", channels_last=True))
        assert not any(isinstance(m, nn.modules.instancenorm._InstanceNorm) for m in fast.modules())
        assert torch.allclose(fast(x), ref, atol=1e-4, rtol=1e-4)  # float32 rounding (channels-last kernels)
    assert instance_norm_to_group_norm(nn.Sequential(nn.InstanceNorm2d(3, track_running_stats=True))) == 0
