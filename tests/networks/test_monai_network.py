"""MonaiNetwork specifics: the MONAI network inside, the output convention, and the record that rebuilds it."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import AttentionUnet, BasicUNet, BasicUNetPlusPlus

from attnseg_monai.bundle.record import BundleRecord
from attnseg_monai.networks import get_network, network_config
from attnseg_monai.networks.nets import MonaiNetwork

FEATURES = (4, 4, 8, 8, 16, 4)


def test_it_is_the_monai_network_with_the_same_outputs():
    torch.manual_seed(0)
    net = MonaiNetwork(2, 3, 3, architecture="BasicUNet", features=FEATURES).eval()
    assert type(net.net) is BasicUNet and net.size_divisible_by == 16
    reference = BasicUNet(2, 3, 3, features=FEATURES).eval()
    reference.load_state_dict({k[len("net.") :]: v for k, v in net.state_dict().items()})
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x))
    att = MonaiNetwork(2, 1, 2, architecture="AttentionUnet", channels=(4, 8, 16, 32), strides=(2, 2, 2))
    assert type(att.net) is AttentionUnet and att.size_divisible_by == 8


def test_unet_plus_plus_gives_its_final_map_first_in_training_and_alone_in_eval():
    torch.manual_seed(0)
    net = MonaiNetwork(2, 1, 3, architecture="BasicUNetPlusPlus", features=FEATURES, deep_supervision=True)
    assert type(net.net) is BasicUNetPlusPlus
    x = torch.randn(2, 1, 32, 32)
    net.train()
    with torch.no_grad():
        inner = net.net(x)  # MONAI's order: X^{0,1}, X^{0,2}, X^{0,3}, X^{0,4}
        outs = net(x)
    assert isinstance(outs, list) and len(outs) == 4
    for got, expected in zip(outs, [inner[-1], *inner[:-1]]):
        torch.testing.assert_close(got, expected)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 32, 32)
    plain = MonaiNetwork(2, 1, 3, architecture="BasicUNetPlusPlus", features=FEATURES).train()
    assert isinstance(plain(x), torch.Tensor), "one map (MONAI's one-element list) is a Tensor in training too"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"architecture": "BasicUNet"},
        {"architecture": "BasicUNetPlusPlus", "features": FEATURES, "deep_supervision": True},
        {"architecture": "AttentionUnet", "channels": (4, 8, 16), "strides": (2, 2)},
        {"architecture": "UNet", "channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 2},
    ],
    ids=lambda k: k["architecture"],
)
def test_the_record_holds_every_argument_and_rebuilds_the_network(kwargs):
    net = get_network("monai", spatial_dims=2, in_channels=3, out_channels=3, **kwargs)
    config = network_config(net)
    assert config["_target_"] == "attnseg_monai.networks.nets.MonaiNetwork"
    assert config["architecture"] == kwargs["architecture"]
    if kwargs["architecture"] == "BasicUNet":  # MONAI's defaults are written down, not left to a later MONAI
        assert config["features"] == [32, 32, 64, 128, 256, 32] and config["norm"] == ["instance", {"affine": True}]
    rebuilt = BundleRecord(bundle="hannet", network=config).build_network()
    assert network_config(rebuilt) == config
    rebuilt.load_state_dict(net.state_dict(), strict=True)


def test_wrong_arguments_say_what_is_valid():
    with pytest.raises(ValueError, match="BasicUNet.*BasicUNetPlusPlus.*AttentionUnet"):
        MonaiNetwork(2, 1, 2, architecture="UNETR")
    with pytest.raises(ValueError, match=r"needs the argument\(s\) \['channels', 'strides'\]"):
        MonaiNetwork(2, 1, 2, architecture="AttentionUnet")
    with pytest.raises(ValueError, match="takes no argument \\['deep_supervision'\\]"):
        MonaiNetwork(2, 1, 2, architecture="BasicUNet", deep_supervision=True)
