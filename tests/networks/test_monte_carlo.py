"""Monte Carlo dropout (what MONAI Label's epistemic scoring asks of a bundle's network): ``train()`` samples with
dropout only, batch norm stays on its running statistics, one output, and the fast path keeps the sampling."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnseg_monai.inferers import FastSlidingWindowInferer
from attnseg_monai.networks import get_network
from attnseg_monai.networks.utils import is_monte_carlo, monte_carlo_dropout
from attnseg_monai.precision import PrecisionPolicy, prepare_for_inference

TINY = {"features": (4, 8, 8, 16, 16)}


def _net(dims: int = 2, dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(0)
    return get_network("hannet", spatial_dims=dims, in_channels=1, out_channels=3, dropout=dropout, **TINY)


def _modes(net: nn.Module) -> dict[type, set[bool]]:
    modes: dict[type, set[bool]] = {}
    for m in net.modules():
        if isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)):
            kind = nn.Dropout if isinstance(m, nn.modules.dropout._DropoutNd) else nn.BatchNorm2d
            modes.setdefault(kind, set()).add(m.training)
    return modes


@pytest.mark.parametrize("dims", [2, 3])
def test_train_samples_with_dropout_only(dims):
    net = monte_carlo_dropout(_net(dims))
    assert is_monte_carlo(net) and not is_monte_carlo(_net(dims))
    x = torch.rand(1, 1, *([16] * dims))
    net.train()
    assert not net.training  # eval mode for everything but the dropout layers
    assert _modes(net) == {nn.Dropout: {True}, nn.BatchNorm2d: {False}}
    with torch.no_grad():
        a, b = net(x), net(x)
    assert isinstance(a, torch.Tensor) and a.shape == (1, 3, *([16] * dims))  # one output, no deep supervision list
    assert not torch.equal(a, b)  # two samples differ
    net.eval()
    assert _modes(net) == {nn.Dropout: {False}, nn.BatchNorm2d: {False}}
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_survives_deepcopy_and_refuses_a_network_without_dropout():
    net = copy.deepcopy(monte_carlo_dropout(_net()))
    assert is_monte_carlo(net)
    net.train()
    assert not net.training and _modes(net)[nn.Dropout] == {True}
    with pytest.raises(ValueError, match="dropout > 0"):
        monte_carlo_dropout(_net(dropout=0.0))


def test_prepared_copy_keeps_sampling_and_folds_batch_norm():
    net = monte_carlo_dropout(_net()).train()
    x = torch.rand(1, 1, 32, 32)
    fast = prepare_for_inference(net, PrecisionPolicy("fp32", channels_last=False, fold_batch_norm=True))
    assert fast.batch_norms_folded > 0
    with torch.no_grad():
        assert not torch.equal(fast(x), fast(x))
    net.eval()
    fast = prepare_for_inference(net, PrecisionPolicy("fp32", channels_last=False, fold_batch_norm=True))
    with torch.no_grad():
        assert torch.equal(fast(x), fast(x))


def test_fast_inferer_samples_a_monte_carlo_network_and_rebuilds_when_switched_back():
    net = monte_carlo_dropout(_net())
    inferer = FastSlidingWindowInferer(roi_size=(32, 32), sw_batch_size=1, precision="auto")
    x = torch.rand(1, 1, 48, 40)
    with torch.no_grad():
        net.train()
        a, b = inferer(x, net), inferer(x, net)
        assert not torch.equal(a, b)
        net.eval()  # the same network, now deterministic: the cached prepared copy must not keep sampling
        c, d = inferer(x, net), inferer(x, net)
        assert torch.equal(c, d)
