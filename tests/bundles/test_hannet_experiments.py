"""hannet's table of experiments (``configs/experiments/``): every row's overrides build the network it names, its
output goes through the bundle's loss, its record rebuilds it, and a MONAI row's model is evaluated through
``inference.json`` with the table's evaluation overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from attnseg_monai.bundle import BUNDLES_DIR
from attnseg_monai.bundle.record import BundleRecord, RecordError, record_path
from attnseg_monai.inference.experiment_spec import check_metrics, load_table
from attnseg_monai.networks import network_config
from attnseg_monai.networks.nets import HanNet, MonaiNetwork

ROOT = BUNDLES_DIR / "hannet"
CONFIGS = ROOT / "configs"
NO_MODELS = str(Path("/nonexistent") / "attnseg-test-models")
SWITCHES = ("skips", "heads", "use_spatial_attention", "use_channel_attention", "deep_supervision")
# the Han-Net rows: (skips, heads, spatial attention, channel attention, deep supervision)
HANNET_ROWS = {
    "hannet": ("nested", "full_resolution", True, True, True),
    "seed_skips": ("seed", "per_level", True, True, True),
    "seed_heads": ("nested", "per_level", True, True, True),
    "no_spatial_attention": ("nested", "full_resolution", False, True, True),
    "no_channel_attention": ("nested", "full_resolution", True, False, True),
    "no_deep_supervision": ("nested", "full_resolution", True, True, False),
}
# the MONAI rows: (class, outputs in training mode)
MONAI_ROWS = {
    "basicunet": ("BasicUNet", 1),
    "basicunetplusplus": ("BasicUNetPlusPlus", 4),
    "attentionunet": ("AttentionUnet", 1),
}


def _parser(*files: str, **overrides) -> ConfigParser:
    """The checkout's configs as a bundle without a trained model (a model trained here would decide the network)."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser["bundle_root"] = str(ROOT)
    parser["ckpt_dir"] = NO_MODELS
    for key, value in overrides.items():
        parser[key] = value
    return parser


def test_the_table_names_every_row_and_metric():
    table = load_table(ROOT)
    assert [r.id for r in table.rows] == [*HANNET_ROWS, *MONAI_ROWS]
    assert table.seed.startswith("000 Han-Net") and table.metrics == ["dice_mean", "aji", "pq"]
    check_metrics(table, ROOT)
    for row in table.rows:
        assert row.overrides == (CONFIGS / "experiments" / f"{row.id}.json").resolve()
        assert [p.name for p in row.evaluation] == (["monai_inference.json"] if row.id in MONAI_ROWS else [])
    for row in HANNET_ROWS:  # a Han-Net row states all five switches, so no row depends on train.json's defaults
        override = json.loads((CONFIGS / "experiments" / f"{row}.json").read_text())
        assert set(override) == {f"network_def#{s}" for s in SWITCHES}


@pytest.mark.parametrize("row", [*HANNET_ROWS, *MONAI_ROWS])
def test_a_row_builds_its_network_trains_through_the_bundle_loss_and_is_recorded(row: str):
    parser = _parser("train.json", f"experiments/{row}.json")
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    if row in HANNET_ROWS:
        assert isinstance(net, HanNet)
        config = network_config(net)
        assert tuple(config[s] for s in SWITCHES) == HANNET_ROWS[row]
        assert config["features"] == [32, 64, 128, 256, 512]
        outputs = 5 if config["deep_supervision"] else 1
    else:
        assert isinstance(net, MonaiNetwork) and net.architecture == MONAI_ROWS[row][0]
        outputs = MONAI_ROWS[row][1]
    x = torch.rand(2, 3, 64, 64)
    label = torch.randint(0, 3, (2, 1, 64, 64)).float()  # float class ids, as LoadImaged gives them
    out = net.train()(x)
    assert (len(out) if isinstance(out, list) else 1) == outputs
    loss = parser.get_parsed_content("loss")(out, label)
    assert torch.isfinite(loss)
    loss.backward()
    with torch.no_grad():
        pred = net.eval()(x)
    assert isinstance(pred, torch.Tensor) and pred.shape == (2, 3, 64, 64), "3 classes for the postprocessing"
    record = parser.get_parsed_content("record").record_for(net)
    rebuilt = BundleRecord.from_dict(json.loads(record.to_json())).build_network()
    assert network_config(rebuilt) == network_config(net)
    rebuilt.load_state_dict(net.state_dict(), strict=True)


def test_a_monai_rows_model_is_evaluated_through_inference_json(tmp_path: Path):
    parser = _parser("train.json", "experiments/attentionunet.json")
    net = parser.get_parsed_content("network_def")
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    parser.get_parsed_content("record").record_for(net).write(record_path(checkpoint))
    infer = ConfigParser()
    infer.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "experiments" / "monai_inference.json")])
    infer["bundle_root"] = str(ROOT)
    infer["ckpt_path"] = str(checkpoint)
    built = infer.get_parsed_content("network_def")
    assert isinstance(built, MonaiNetwork) and network_config(built) == network_config(net)
    assert infer.get_parsed_content("inferer").size_divisible_by == built.size_divisible_by == 16
    plain = ConfigParser()  # inference.json alone builds HanNet: the record refuses the other network, loudly
    plain.read_config(str(CONFIGS / "inference.json"))
    plain["bundle_root"] = str(ROOT)
    plain["ckpt_path"] = str(checkpoint)
    with pytest.raises(Exception) as err:  # noqa: B017 - MONAI wraps the RecordError in a RuntimeError
        plain.get_parsed_content("network_def")
    cause = err.value
    while cause is not None and not isinstance(cause, RecordError):
        cause = cause.__cause__
    assert cause is not None and "MonaiNetwork" in str(cause)
