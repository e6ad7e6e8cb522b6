"""The ``engine`` option: ``attnseg infer --engine``, ``BundlePredictor(engine=...)``, the bundles' ``engine`` key."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from attnseg_monai import inference
from attnseg_monai.cli import AttnsegCLI, main
from attnseg_monai.inference import BundlePredictor
from attnseg_monai.inference.options import ModelSettings
from attnseg_monai.precision import ENGINES, FastNetwork
from attnseg_monai.precision.openvino_engine import OpenVINONetwork
from tests.inference.helpers import HANNET_OVERRIDES, save_tiny_hannet_checkpoint, tiny_hannet_predictor, write_png

pytest.importorskip("openvino")  # the test extra installs it

pytestmark = pytest.mark.usefixtures("one_thread")

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_tiny_hannet_checkpoint(tmp_path_factory.mktemp("engine") / "tiny.pt")


def test_engine_defaults_to_auto_and_is_validated():
    assert inspect.signature(BundlePredictor).parameters["engine"].default == "auto"
    assert inspect.signature(AttnsegCLI.infer).parameters["engine"].default == "auto"
    for value in ENGINES:
        assert BundlePredictor(device="cpu", engine=value).engine == value
    with pytest.raises(ValueError, match="engine"):
        ModelSettings(engine="tensorrt")


def test_every_bundle_inferer_takes_the_engine_key():
    for config in sorted(BUNDLES.glob("*/configs/inference*.json")):
        text = config.read_text()
        if '"@precision"' in text:
            assert '"@engine"' in text, f"{config}: the inferer takes precision but not engine"
        if '"precision": "auto"' in text and config.name == "inference.json":
            assert '"engine": "auto"' in text, config


def test_option_then_bundle_key_decide_the_engine(checkpoint):
    auto = tiny_hannet_predictor(checkpoint)
    assert auto.parts.inferer.engine == "auto" and isinstance(auto.network, OpenVINONetwork)
    torch_key = tiny_hannet_predictor(checkpoint, overrides={"engine": "torch"})  # the bundle's key
    assert torch_key.parts.inferer.engine == "torch"
    assert isinstance(torch_key.network, FastNetwork) and not isinstance(torch_key.network, OpenVINONetwork)
    forced = tiny_hannet_predictor(checkpoint, overrides={"engine": "torch"}, engine="openvino")  # the option wins
    assert forced.parts.inferer.engine == "openvino" and isinstance(forced.network, OpenVINONetwork)
    with pytest.raises(Exception, match="engine"):
        tiny_hannet_predictor(checkpoint, overrides={"engine": "onnx"})
    image = torch.rand(3, 96, 80).numpy()
    a, b = torch_key.predict_array(image)["classes"], auto.predict_array(image)["classes"]
    assert a.shape == b.shape and (a == b).mean() > 0.95


def test_cli_engine_flag_reaches_thetiny_hannet_predictor(checkpoint, tmp_path, monkeypatch):
    seen = []

    class Recording(BundlePredictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.engine)

    monkeypatch.setattr(inference, "BundlePredictor", Recording)
    write_png(tmp_path / "in" / "a.png", 48, 40)
    args = ["infer", "hannet", str(tmp_path / "in"), str(tmp_path / "out"), "--checkpoint", str(checkpoint)]
    args += ["--overrides", json.dumps(HANNET_OVERRIDES), "--device", "cpu", "--num_workers", "0", "--noprogress"]
    manifest = tmp_path / "out" / "attnseg_manifest.json"
    assert main([*args, "--engine", "torch"]) == 0
    assert json.loads(manifest.read_text())["cases"]["a"]["engine"] == "torch"  # what ran, recorded per case
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(manifest.read_text())["cases"]["a"]["engine"] == "openvino"
    assert seen == ["torch", "auto"]
    assert main([*args, "--engine", "tensorrt"]) != 0
