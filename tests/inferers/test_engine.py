"""The engine of the fast path: torch or OpenVINO, the choice, the fallback to torch, the disk cache, the agreement."""

from __future__ import annotations

import logging
import sys

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from torch import nn

from attnseg_monai.inferers import FastSlidingWindowInferer, SlabSlidingWindowInferer, with_fast_path
from attnseg_monai.networks import get_network
from attnseg_monai.networks.utils import monte_carlo_dropout
from attnseg_monai.precision import ENGINES, FastNetwork, choose_engine, prepare_engine, resolve_policy
from attnseg_monai.precision import openvino_engine as ove
from attnseg_monai.precision.policy import PrecisionPolicy

openvino = pytest.importorskip("openvino")  # the test extra installs it: these tests run in CI

pytestmark = pytest.mark.usefixtures("one_thread")

ENGINE_LOGGERS = ("attnseg_monai.precision.openvino_engine", "attnseg_monai.precision.engine")


def _hannet(dims: int = 2, seed: int = 0, in_channels: int = 3, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    net = get_network(
        "hannet", spatial_dims=dims, in_channels=in_channels, out_channels=3, features=(4, 8, 16), **kwargs
    )
    return net.eval()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name in ENGINE_LOGGERS]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh disk cache for the test (``$ATTNSEG_OPENVINO_CACHE``)."""
    folder = tmp_path / "openvino"
    monkeypatch.setenv(ove.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def conversions(monkeypatch):
    """Counts the calls of ``openvino.convert_model``."""
    calls = []
    convert = openvino.convert_model

    def counted(*args, **kwargs):
        calls.append(kwargs.get("input"))
        return convert(*args, **kwargs)

    monkeypatch.setattr(openvino, "convert_model", counted)
    return calls


# ---------------------------------------------------------------------------------------------------- the choice
def test_engine_option_is_validated():
    assert ENGINES == ("auto", "torch", "openvino")
    with pytest.raises(ValueError, match="engine"):
        FastSlidingWindowInferer((32, 32), engine="tensorrt")
    with pytest.raises(ValueError, match="engine"):
        with_fast_path(SlidingWindowInferer((32, 32)), engine="onnx")
    with pytest.raises(ValueError, match="engine"):
        choose_engine("cuda", resolve_policy("auto", "cpu"))


def test_auto_picks_openvino_on_the_cpu_and_torch_elsewhere():
    cpu = resolve_policy("auto", "cpu")
    assert choose_engine("auto", cpu)[0] == "openvino"
    assert choose_engine("openvino", resolve_policy("fp32"), precision="fp32")[0] == "openvino"
    # an explicit precision keeps auto on torch (fp32 stays MONAI's path exactly); torch when asked; CUDA: torch
    engine, why = choose_engine("auto", resolve_policy("fp32"), precision="fp32")
    assert engine == "torch" and "fp32" in why
    assert choose_engine("torch", cpu)[0] == "torch"
    cuda = PrecisionPolicy("bf16", True, False, device_type="cuda", autocast=True)
    assert choose_engine("auto", cuda) == ("torch", "OpenVINO runs on the CPU here; cuda runs torch")
    # the inferers: auto prepares an OpenVINO network, torch a torch one, fp32 leaves the network as it is
    net = _hannet()
    auto = FastSlidingWindowInferer((32, 32))
    assert isinstance(auto.prepared_network(net, auto.policy_for("cpu")), ove.OpenVINONetwork)
    torch_only = FastSlidingWindowInferer((32, 32), engine="torch")
    prepared = torch_only.prepared_network(net, torch_only.policy_for("cpu"))
    assert isinstance(prepared, FastNetwork) and not isinstance(prepared, ove.OpenVINONetwork)
    x = torch.rand(1, 3, 32, 32)
    assert FastSlidingWindowInferer((32, 32), precision="fp32").fast_network(x, net) is net
    slab = with_fast_path(SlabSlidingWindowInferer((16, 16, 16)), engine="openvino")
    assert slab.engine == "openvino" and isinstance(
        slab.prepare(_hannet(3, in_channels=1), slab.policy_for("cpu")), ove.OpenVINONetwork
    )


def test_training_mode_and_monte_carlo_dropout_stay_on_torch():
    x = torch.rand(1, 3, 32, 32)
    inferer = FastSlidingWindowInferer((32, 32), engine="openvino")
    trained = _hannet().train()
    assert inferer.fast_network(x, trained) is trained  # MONAI Label's scoring: the network runs as it is
    sampling = monte_carlo_dropout(_hannet(dropout=0.5)).train()  # eval mode, dropout sampling
    assert choose_engine("auto", inferer.policy_for("cpu"), sampling)[0] == "torch"
    prepared = inferer.fast_network(x, sampling)
    assert not isinstance(prepared, ove.OpenVINONetwork)
    with torch.no_grad():
        assert not torch.equal(prepared(x), prepared(x))  # still samples


def test_a_missing_extra_falls_back_to_torch(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    engine, why = choose_engine("auto", resolve_policy("auto", "cpu"))
    assert engine == "torch" and "pip install 'attnseg-monai[openvino]'" in why
    net, x = _hannet(), torch.rand(1, 3, 48, 40)
    with caplog.at_level(logging.WARNING):
        auto = FastSlidingWindowInferer((32, 32), overlap=0.25)(x, net)
        assert _warnings(caplog) == []  # auto: quietly torch
        asked = FastSlidingWindowInferer((32, 32), overlap=0.25, engine="openvino")(x, net)
    torch_path = FastSlidingWindowInferer((32, 32), overlap=0.25, engine="torch")(x, net)
    assert torch.equal(auto, torch_path) and torch.equal(asked, torch_path)
    (warning,) = _warnings(caplog)
    assert "HanNet" in warning and "not installed" in warning


# ---------------------------------------------------------------------------------------------------- fallback
class _Bessel(nn.Module):
    """A network with an op OpenVINO has no conversion rule for (``aten::i0``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.i0(self.conv(x))


def test_an_op_openvino_cannot_convert_falls_back_with_one_warning(cache, caplog):
    torch.manual_seed(0)
    net, x = _Bessel().eval(), torch.rand(1, 3, 40, 56)
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        inferer = FastSlidingWindowInferer((32, 32), overlap=0.25, engine="openvino")
        out = inferer(x, net)
        out_again = inferer(x, net)
        reference = FastSlidingWindowInferer((32, 32), overlap=0.25, engine="torch")(x, net)
        assert logging.getLogger().level == logging.WARNING  # a failed conversion changes the root logger: undone
    (warning,) = _warnings(caplog)  # one warning for the network, not one per window or call
    assert "_Bessel" in warning and "aten::i0" in warning
    prepared = inferer.prepared_network(net, inferer.policy_for("cpu"))
    assert prepared.engine == "torch" and "aten::i0" in prepared.engine_error
    assert torch.equal(out, reference) and torch.equal(out_again, reference)
    # remembered on disk: the next process warns again (with the reason) but does not convert again
    (record,) = cache.rglob("*.json")
    assert "aten::i0" in record.read_text()


def test_a_failing_conversion_or_run_falls_back_with_one_warning(cache, caplog, monkeypatch):
    net, x = _hannet(), torch.rand(1, 3, 48, 40)
    reference = FastSlidingWindowInferer((32, 32), overlap=0.25, engine="torch")(x, net)

    def broken(*args, **kwargs):
        raise RuntimeError("no conversion today")

    monkeypatch.setattr(openvino, "convert_model", broken)
    with caplog.at_level(logging.WARNING):
        out = FastSlidingWindowInferer((32, 32), overlap=0.25, engine="openvino")(x, net)
    (warning,) = _warnings(caplog)
    assert "HanNet" in warning and "no conversion today" in warning
    assert torch.equal(out, reference)
    monkeypatch.undo()
    monkeypatch.setenv(ove.CACHE_ENV, str(cache))
    caplog.clear()

    def failing_run(self, shape):
        raise RuntimeError("compiled model crashed")

    monkeypatch.setattr(ove.OpenVINONetwork, "_request", failing_run)
    with caplog.at_level(logging.WARNING):
        out = FastSlidingWindowInferer((32, 32), overlap=0.25, engine="openvino")(x, net)
    (warning,) = _warnings(caplog)
    assert "compiled model crashed" in warning and torch.equal(out, reference)


class _FrozenSize(nn.Module):
    """Resizes with sizes taken as Python ints: a trace freezes them, so one conversion cannot serve every shape."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[2]), int(x.shape[3]))
        return self.head(nn.functional.interpolate(self.down(x), size=size, mode="bilinear", align_corners=False))


def test_a_network_with_sizes_frozen_at_tracing_is_converted_per_shape(cache, conversions, caplog):
    torch.manual_seed(0)
    net = _FrozenSize().eval()
    fast = prepare_engine(net, resolve_policy("fp32"), engine="openvino", precision="fp32")
    with caplog.at_level(logging.WARNING), torch.no_grad():
        for shape in ((1, 3, 32, 48), (2, 3, 16, 16)):
            x = torch.rand(shape)
            out = fast(x)
            assert out.shape == (shape[0], 2, *shape[2:])
            torch.testing.assert_close(out, net(x), rtol=1e-3, atol=1e-4)
    assert fast.engine == "openvino" and fast.mode == "static" and _warnings(caplog) == []
    # the dynamic try, then one static conversion per shape
    assert len(conversions) == 3


# ---------------------------------------------------------------------------------------------------- cache
def test_the_disk_cache_serves_the_next_build_and_new_weights_make_a_new_entry(cache, conversions):
    net, x = _hannet(), torch.rand(1, 3, 32, 48)
    first = prepare_engine(net, resolve_policy("auto", "cpu"))
    with torch.no_grad():
        out = first(x)
        first(torch.rand(2, 3, 64, 32))  # another shape: the same conversion, compiled again
    assert first.mode == "dynamic" and first.cache_hits == 0 and len(conversions) == 1
    (record,) = cache.rglob("*.json")
    assert record.with_suffix(".xml").is_file() and record.with_suffix(".bin").is_file()
    second = prepare_engine(net, resolve_policy("auto", "cpu"))  # e.g. the next process
    with torch.no_grad():
        assert torch.equal(second(x), out)
    assert second.cache_hits == 1 and len(conversions) == 1
    # the key follows the weights and the settings; not the copy or the memory layout
    key = ove.network_fingerprint(net, 3, 2)
    assert ove.network_fingerprint(_hannet(), 3, 2) == key
    assert ove.network_fingerprint(_hannet().to(memory_format=torch.channels_last), 3, 2) == key
    assert ove.network_fingerprint(_hannet(use_spatial_attention=False), 3, 2) != key
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    assert ove.network_fingerprint(net, 3, 2) != key
    third = prepare_engine(net, resolve_policy("auto", "cpu"))
    with torch.no_grad():
        third(x)
    assert third.cache_hits == 0 and len(conversions) == 2 and len(list(cache.rglob("*.json"))) == 2


def test_the_inferer_rebuilds_when_the_weights_change(cache):
    net, x = _hannet(), torch.rand(1, 3, 32, 32)
    inferer = FastSlidingWindowInferer((32, 32), engine="openvino")
    with torch.no_grad():
        before = inferer(x, net)
        next(net.parameters()).mul_(0.5)
        after = inferer(x, net)
        fresh = FastSlidingWindowInferer((32, 32), engine="openvino")(x, net)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, fresh)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ove.CACHE_ENV, str(tmp_path / "here"))
    assert ove.openvino_cache_dir() == tmp_path / "here"
    monkeypatch.setenv(ove.CACHE_ENV, "off")
    assert ove.openvino_cache_dir() is None
    monkeypatch.delenv(ove.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ove.openvino_cache_dir() == tmp_path / "xdg" / "attnseg_monai" / "openvino"


# ---------------------------------------------------------------------------------------------------- results
def _blobs(batch: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images and their labels (0 background, 1 bright in channel 0, 2 bright in channel 1)."""
    grids = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    x = torch.zeros(batch, 3, size, size)
    for b in range(batch):
        for c in range(3):
            for _ in range(3):
                cy, cx = torch.rand(2, generator=gen)
                x[b, c] += torch.exp(-((grids[0] - cy) ** 2 + (grids[1] - cx) ** 2) / 0.01)
    x = x + 0.05 * torch.rand(x.shape, generator=gen)
    y = torch.zeros(batch, size, size, dtype=torch.long)
    y[x[:, 0] > 0.5] = 1
    y[(x[:, 1] > 0.5) & (x[:, 1] > x[:, 0])] = 2
    return x, y


def test_openvino_labels_agree_with_float32_on_a_trained_tiny_model(cache):
    gen = torch.Generator().manual_seed(0)
    net = _hannet().train()
    optimiser = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(80):
        x, y = _blobs(4, 48, gen)
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    net.eval()
    image, truth = _blobs(1, 160, gen)
    with torch.inference_mode():
        fp32 = SlidingWindowInferer((64, 64), overlap=0.25, mode="gaussian")(image, net).argmax(1)
        inferer = FastSlidingWindowInferer((64, 64), overlap=0.25, mode="gaussian", engine="openvino")
        ov_labels = inferer(image, net).argmax(1)
    prepared = inferer.prepared_network(net, inferer.policy_for("cpu"))
    assert prepared.engine == "openvino"
    assert (fp32 == truth).float().mean() > 0.9  # the model learned the task: its labels have margins
    agreement = (ov_labels == fp32).float().mean()
    print(f"labels: fp32 vs truth {(fp32 == truth).float().mean():.4f}, OpenVINO vs fp32 {agreement:.4f}")
    assert agreement >= 0.99


class _TwoOutputs(nn.Module):
    """An eval-mode network that returns logits and a map (a tuple), with ``attention_maps``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        return h, torch.sigmoid(self.gate(h))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gate": self.forward(x)[1]}


def test_extra_outputs_and_attention_maps_keep_working(cache):
    torch.manual_seed(0)
    net, x = _TwoOutputs().eval(), torch.rand(1, 3, 24, 32)
    fast = prepare_engine(net, resolve_policy("fp32"), engine="openvino", precision="fp32")
    with torch.no_grad():
        logits, gate = fast(x)
        ref_logits, ref_gate = net(x)
        maps = fast.attention_maps(x)
    assert fast.engine == "openvino"
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gate, ref_gate, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(maps["gate"], ref_gate)  # attention maps: the torch copy
    # hannet's attention maps through the OpenVINO network
    han = prepare_engine(_hannet(), resolve_policy("auto", "cpu"))
    with torch.no_grad():
        assert set(han.attention_maps(torch.rand(1, 3, 32, 32))) == set(
            _hannet().attention_maps(torch.rand(1, 3, 32, 32))
        )


def test_openvino_converts_the_network_as_given_not_the_torch_prepared_copy(cache, monkeypatch):
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    net = BasicUNet(2, 1, 2, features=(4, 4, 8, 16, 32, 4)).eval()  # instance norm
    converted = []
    convert = openvino.convert_model

    def recording(module, *args, **kwargs):
        converted.append(module)
        return convert(module, *args, **kwargs)

    monkeypatch.setattr(openvino, "convert_model", recording)
    fast = prepare_engine(net, resolve_policy("auto", "cpu"), "openvino")
    x = torch.rand(1, 1, 64, 48)
    with torch.inference_mode():
        out, reference = fast(x), net(x)
    (module,) = converted
    norms = {type(m) for m in module.modules()}
    # torch's prepared copy swaps instance norm for GroupNorm(C, C) (faster channels-last kernels in torch);
    # OpenVINO gets MONAI's own instance norm (its fused normalisation is faster), float32, eval mode
    assert nn.InstanceNorm2d in norms and nn.GroupNorm not in norms
    assert any(isinstance(m, nn.GroupNorm) for m in fast.module.modules())
    assert not module.training and all(p.dtype == torch.float32 for p in module.parameters())
    assert module is not net and fast.engine == "openvino"
    assert (out.argmax(1) == reference.argmax(1)).float().mean() > 0.99
