"""The ``precision`` option of ``BundlePredictor`` and ``attnseg infer``, and the bundles' ``precision`` key."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch import nn

from attnseg_monai.cli import AttnsegCLI, main
from attnseg_monai.inference import BundlePredictor
from attnseg_monai.inferers import FastSlidingWindowInferer
from attnseg_monai.precision import FastNetwork, resolve_policy
from tests.inference.helpers import HANNET_OVERRIDES, save_tiny_hannet_checkpoint, tiny_hannet_predictor, write_png

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_tiny_hannet_checkpoint(tmp_path_factory.mktemp("precision") / "tiny.pt")


def test_precision_defaults_to_auto_and_is_validated():
    assert inspect.signature(BundlePredictor).parameters["precision"].default == "auto"
    assert inspect.signature(AttnsegCLI.infer).parameters["precision"].default == "auto"
    for value in ("auto", "fp32", "bf16", "fp16"):
        assert BundlePredictor(device="cpu", precision=value).precision == value
    with pytest.raises(ValueError, match="precision"):
        BundlePredictor(device="cpu", precision="fp8")


def test_policy_follows_option_then_bundle_key_then_device(checkpoint):
    auto = tiny_hannet_predictor(checkpoint)
    assert auto.policy == resolve_policy("auto", "cpu")
    assert isinstance(auto.network, FastNetwork)  # what the bundle's inferer runs
    # the bundle's key, option left on auto
    bundle_fp32 = tiny_hannet_predictor(checkpoint, overrides={"precision": "fp32"})
    assert bundle_fp32.policy.is_reference
    forced = tiny_hannet_predictor(checkpoint, overrides={"precision": "fp32"}, precision="bf16")  # the option wins
    assert forced.policy.name == "bf16"
    net = forced.network
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())  # folded
    assert all(p.dtype == torch.bfloat16 for p in net.parameters())
    with pytest.raises(Exception, match="precision"):
        tiny_hannet_predictor(checkpoint, overrides={"precision": "int8"})


def test_bundle_inferer_is_the_fast_one_and_fp32_matches_bf16_closely(checkpoint):
    fp32, bf16 = (
        tiny_hannet_predictor(checkpoint, precision="fp32"),
        tiny_hannet_predictor(checkpoint, precision="bf16"),
    )
    assert isinstance(fp32.parts.inferer, FastSlidingWindowInferer)
    image = torch.rand(3, 96, 80).numpy()
    a, b = fp32.predict_array(image)["classes"], bf16.predict_array(image)["classes"]
    assert a.shape == b.shape and sorted(a.shape) == [80, 96]
    assert (a == b).mean() > 0.95


def test_cli_precision_flag_reaches_the_manifest(checkpoint, tmp_path):
    write_png(tmp_path / "in" / "a.png", 48, 40)
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"out_{precision}"
        args = ["infer", "hannet", str(tmp_path / "in"), str(out), "--checkpoint", str(checkpoint)]
        args += ["--overrides", json.dumps(HANNET_OVERRIDES), "--device", "cpu", "--num_workers", "0"]
        assert main([*args, "--noprogress", "--precision", precision]) == 0
        assert f'"precision": "{precision}"' in (out / "attnseg_manifest.json").read_text()
    assert main([*args, "--noprogress", "--precision", "fp8"]) != 0
