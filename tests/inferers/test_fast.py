"""The fast sliding-window inferer: exact on the float32 path, close in bf16, fitted grids, weight changes."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import SlidingWindowInferer
from monai.inferers.utils import _get_scan_interval
from monai.metrics import DiceMetric
from monai.networks.blocks import Convolution
from monai.networks.utils import one_hot
from torch import nn

from attnseg_monai.inferers import FastSlidingWindowInferer, SlabSlidingWindowInferer, fit_window_grid, with_fast_path
from attnseg_monai.networks import get_network
from attnseg_monai.precision import FastNetwork

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(dims: int, seed: int = 0, in_channels: int = 3, classes: int = 3):
    torch.manual_seed(seed)
    net = get_network("hannet", spatial_dims=dims, in_channels=in_channels, out_channels=classes, features=(4, 8, 16))
    return net.eval()


def _smooth(shape, seed: int = 0) -> torch.Tensor:
    """A smooth image: a few wide Gaussian blobs per channel."""
    gen = torch.Generator().manual_seed(seed)
    grids = torch.meshgrid(*[torch.linspace(0, 1, s) for s in shape[2:]], indexing="ij")
    out = torch.zeros(shape)
    for c in range(shape[1]):
        for _ in range(4):
            centre = torch.rand(len(grids), generator=gen)
            dist = sum((g - float(m)) ** 2 for g, m in zip(grids, centre))
            out[0, c] += torch.exp(-dist / 0.02)
    return out


@pytest.mark.parametrize(
    ("dims", "shape", "roi"), [(2, (1, 3, 70, 90), (32, 32)), (3, (1, 1, 20, 36, 28), (16, 16, 16))]
)
def test_forced_fp32_equals_monai_exactly(dims, shape, roi):
    net = _net(dims, in_channels=shape[1])
    x = torch.rand(shape)
    with torch.no_grad():
        ref = SlidingWindowInferer(roi, sw_batch_size=2, overlap=0.25, mode="gaussian")(x, net)
        fast = FastSlidingWindowInferer(roi, sw_batch_size=2, overlap=0.25, mode="gaussian", precision="fp32")(x, net)
        wrapped = with_fast_path(SlidingWindowInferer(roi, 2, 0.25, mode="gaussian"), precision="fp32")(x, net)
    assert torch.equal(fast, ref) and torch.equal(wrapped, ref)


def _calibrated_tiny_net(x: torch.Tensor) -> nn.Module:
    """conv-BN-ReLU x2 + 1x1 head, batch statistics measured on ``x`` (so the classes are not one everywhere)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        Convolution(2, 3, 8, norm="batch", act="relu"),
        Convolution(2, 8, 8, norm="batch", act="relu", kernel_size=5),
        nn.Conv2d(8, 3, 1),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass gives the statistics of x
    with torch.no_grad():
        net.train()(x)
    return net.eval()


def test_bf16_path_is_close_to_fp32_on_a_smooth_input():
    x = _smooth((1, 3, 96, 128))
    net = _calibrated_tiny_net(x)
    with torch.no_grad():
        ref = SlidingWindowInferer((64, 64), 1, 0.25, mode="gaussian")(x, net)
        inferer = FastSlidingWindowInferer((64, 64), 1, 0.25, mode="gaussian", precision="bf16")
        out = inferer(x, net)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    prepared = inferer.prepared_network(net, inferer.policy_for("cpu"))
    assert isinstance(prepared, FastNetwork) and prepared.batch_norms_folded == 2
    a, b = ref.argmax(1, keepdim=True), out.argmax(1, keepdim=True)
    assert all(int((a == k).sum()) > 100 for k in range(3))  # a real segmentation: every class present
    dice = DiceMetric(include_background=True, reduction="mean")(one_hot(b, 3), one_hot(a, 3))
    assert float(dice.mean()) >= 0.99


def test_prepared_copy_is_reused_until_the_weights_change():
    net = _net(2)
    inferer = FastSlidingWindowInferer((32, 32), precision="bf16")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        first = inferer(x, net)
        prepared = inferer.prepared_network(net, inferer.policy_for("cpu"))
        assert inferer.prepared_network(net, inferer.policy_for("cpu")) is prepared
        state = {k: v * 0.5 if v.is_floating_point() else v for k, v in net.state_dict().items()}
        net.load_state_dict(state)  # a checkpoint loaded into the same module (CheckpointLoader does this)
        assert inferer.prepared_network(net, inferer.policy_for("cpu")) is not prepared
        second = inferer(x, net)
    assert not torch.equal(first, second)


def test_a_network_in_training_mode_runs_as_it_is():
    """MONAI Label's epistemic scoring runs the bundle's inferer on a network in train mode with dropout: the fast
    path must not swap in its prepared (eval-mode, batch-norm-folded) copy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Dropout(0.5), nn.Conv2d(8, 2, 1))
    inferer = FastSlidingWindowInferer((16, 16), precision="bf16")
    x = torch.rand(1, 3, 16, 16)
    net.train()
    assert inferer.fast_network(x, net) is net
    with torch.no_grad():
        assert not torch.equal(inferer(x, net), inferer(x, net))  # Monte Carlo dropout samples differ
    net.eval()
    assert isinstance(inferer.fast_network(x, net), FastNetwork)
    with torch.no_grad():
        assert torch.equal(inferer(x, net), inferer(x, net))


@pytest.mark.parametrize(
    ("size", "max_roi", "overlap", "divisor"),
    [
        ((1720, 1280), (512, 512), (64, 64), 16),
        ((1000, 1000), (256, 256), (32, 32), 16),
        ((300, 40), (128, 64), (16, 8), 4),
    ],
)
def test_fitted_grid_covers_with_the_fewest_windows(size, max_roi, overlap, divisor):
    roi, fractions = fit_window_grid(size, max_roi, overlap, divisor)
    interval = _get_scan_interval(size, roi, len(size), fractions)
    slices = dense_patch_slices(size, roi, interval)
    for axis, (s, r, m, o) in enumerate(zip(size, roi, max_roi, overlap)):
        assert r % divisor == 0 and r <= m
        starts = sorted({sl[axis].start for sl in slices})
        n = len(starts)
        assert starts[0] == 0 and starts[-1] + r >= s  # covered
        if s > m:
            assert all(b - a <= r - o for a, b in zip(starts, starts[1:]))  # at least the overlap asked for
            assert n == min(k for k in range(2, 64) if math.ceil((s + (k - 1) * o) / k) <= (m // divisor) * divisor)
        else:
            assert n == 1
    with pytest.raises(ValueError):
        fit_window_grid((100,), (64,), (64,), 16)


def test_fit_windows_runs_fewer_windows_than_the_fixed_grid():
    calls = {"fixed": 0, "fit": 0}
    net = _net(2)

    def counting(key):
        def run(x):
            calls[key] += x.shape[0]
            return net(x)

        return run

    x = torch.rand(1, 3, 100, 140)
    with torch.no_grad():
        FastSlidingWindowInferer((64, 64), 1, 0.25, precision="fp32")(x, counting("fixed"))
        fit = FastSlidingWindowInferer((96, 96), 1, 0.125, precision="fp32", fit_windows=True, size_divisible_by=4)
        out = fit(x, counting("fit"))
    assert out.shape == (1, 3, 100, 140) and calls["fit"] < calls["fixed"]
    assert all(r % 4 == 0 for r in fit.last_grid[0])


def test_with_fast_path_keeps_class_and_settings_and_slab_labels_match():
    net = _net(3, in_channels=1)
    slab = SlabSlidingWindowInferer(roi_size=(16, 16, 16), sw_batch_size=2, output="labels")
    fast = with_fast_path(slab, precision="fp32")
    assert isinstance(fast, SlabSlidingWindowInferer) and fast.output == "labels" and fast.roi_size == slab.roi_size
    assert with_fast_path(fast, precision="bf16") is fast and fast.precision == "bf16"
    x = _smooth((1, 1, 24, 32, 20))
    with torch.no_grad():
        ref = slab(x, net)
        labels = fast(x, net)
    assert labels.dtype == ref.dtype and labels.shape == ref.shape
    assert float((labels == ref).float().mean()) >= 0.98
    with pytest.raises(ValueError):
        with_fast_path(slab, precision="int8")
    with pytest.raises(ValueError):
        FastSlidingWindowInferer((16, 16), precision="half")


def test_with_fast_path_from_a_bundle_config():
    from monai.bundle import ConfigParser

    from attnseg_monai.inferers import SliceWiseInferer

    inner = {"_target_": "attnseg_monai.inferers.SliceWiseInferer", "roi_size": None, "sw_batch_size": 4, "axis": -1}
    config = {
        "precision": "fp32",
        "inferer": {"_target_": "attnseg_monai.inferers.with_fast_path", "precision": "@precision", "inferer": inner},
    }
    inferer = ConfigParser(config).get_parsed_content("inferer")
    assert isinstance(inferer, SliceWiseInferer) and inferer.precision == "fp32" and inferer.sw_batch_size == 4
