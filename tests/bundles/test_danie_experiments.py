"""danie's table of experiments (``configs/experiments/``) and the paper recipe's iteration budget: every row's
overrides build the network it names, its output goes through the bundle's loss, its record rebuilds it; the paper
recipe trains about 14k iterations whatever the number of training volumes or slices."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from attnseg_monai.bundle import BUNDLES_DIR
from attnseg_monai.bundle.danie import epochs_for_iterations
from attnseg_monai.bundle.record import BundleRecord
from attnseg_monai.inference.experiment_spec import check_metrics, load_table
from attnseg_monai.networks import network_config
from attnseg_monai.networks.blocks.hierarchical_attention import DynamicCalibration, HierarchicalAttentionBlock
from attnseg_monai.networks.blocks.stream_fusion import AdditionFusion, ConcatenationFusion
from attnseg_monai.networks.blocks.transformer import TransformerBlock
from attnseg_monai.networks.nets import DANIE

ROOT = BUNDLES_DIR / "danie"
CONFIGS = ROOT / "configs"
NO_MODELS = str(Path("/nonexistent") / "attnseg-test-models")
SWITCHES = ("streams", "hap_order", "dynamic_calibration", "fusion", "sap_attention")
# the rows: (streams, hap_order, dynamic_calibration, fusion, sap_attention)
ROWS = {
    "danie": ("both", "channel_first", True, "joint_preservation", "spatial_reduction"),
    "sap_only": ("sap", "channel_first", True, "joint_preservation", "spatial_reduction"),
    "hap_only": ("hap", "channel_first", True, "joint_preservation", "spatial_reduction"),
    "spatial_first": ("both", "spatial_first", True, "joint_preservation", "spatial_reduction"),
    "no_calibration": ("both", "channel_first", False, "joint_preservation", "spatial_reduction"),
    "fusion_add": ("both", "channel_first", True, "add", "spatial_reduction"),
    "fusion_concat": ("both", "channel_first", True, "concat", "spatial_reduction"),
    "full_attention": ("both", "channel_first", True, "joint_preservation", "full"),
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
    assert [r.id for r in table.rows] == list(ROWS)
    assert table.seed.startswith("003 DANIE")
    assert table.metrics == ["dice_mean", "hd95_mean", "iou_mean", "asd_mean"]
    check_metrics(table, ROOT)
    for row in table.rows:
        assert row.overrides == (CONFIGS / "experiments" / f"{row.id}.json").resolve()
        assert row.trains and not row.evaluation
        override = json.loads(row.overrides.read_text())
        # every row states all five switches, so no row depends on train.json's defaults
        assert override == {f"network_def#{s}": v for s, v in zip(SWITCHES, ROWS[row.id])}
    # table_paper: the same rows, trained with paper.json
    paper = load_table(ROOT, "table_paper")
    assert [(r.id, r.overrides) for r in paper.rows] == [(r.id, r.overrides) for r in table.rows]
    assert all(r.train_configs == [(CONFIGS / "paper.json").resolve()] for r in paper.rows)
    assert paper.metrics == table.metrics and paper.seed == table.seed
    check_metrics(paper, ROOT)
    # train.json states the defaults, which are the full DANIE row
    defaults = _parser("train.json")["network_def"]
    assert tuple(defaults[s] for s in SWITCHES) == ROWS["danie"]


@pytest.mark.parametrize("row", list(ROWS))
def test_a_row_builds_its_network_trains_through_the_bundle_loss_and_is_recorded(row: str):
    parser = _parser("train.json", f"experiments/{row}.json")
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, DANIE)
    config = network_config(net)
    assert tuple(config[s] for s in SWITCHES) == ROWS[row]
    assert config["embed_dims"] == [16, 32, 64, 128], "the quick recipe's tiny widths"
    streams, order, calibration, fusion, attention = ROWS[row]
    blocks = [m for m in net.modules() if isinstance(m, HierarchicalAttentionBlock)]
    assert bool(blocks) == (streams != "sap")
    assert all(b.channel_first == (order == "channel_first") for b in blocks)
    assert any(isinstance(m, DynamicCalibration) for m in net.modules()) == (calibration and streams != "sap")
    transformers = [m for m in net.modules() if isinstance(m, TransformerBlock)]
    assert bool(transformers) == (streams != "hap")
    assert all(t.attn.reduce == (attention == "spatial_reduction") for t in transformers[:-1])
    kinds = {type(s.fusion).__name__ if s.fusion is not None else None for s in net.stages}
    expected = {"add": AdditionFusion.__name__, "concat": ConcatenationFusion.__name__}.get(fusion)
    assert kinds == {expected if streams == "both" else None}
    x = torch.rand(2, 1, 96, 96)
    label = torch.randint(0, 9, (2, 1, 96, 96)).float()
    out = net.train()(x)
    loss = parser.get_parsed_content("loss")(out, label)
    assert torch.isfinite(loss)
    loss.backward()
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 9, 96, 96)
    record = parser.get_parsed_content("record").record_for(net)
    rebuilt = BundleRecord.from_dict(json.loads(record.to_json())).build_network()
    assert network_config(rebuilt) == network_config(net)
    rebuilt.load_state_dict(net.state_dict(), strict=True)


# ---------------------------------------------------------------------------------------------------------------
# the paper recipe: an iteration budget (TransUNet's ~14k iterations at batch 24), not a number of epochs


def test_epochs_for_iterations():
    # raw BTCV, TransUNet's split: 18 training volumes, 8 slices each, batches of 24 slices = 3 volumes
    assert epochs_for_iterations(14000, 18, 8, 24) == 2334
    assert 14000 <= 2334 * math.ceil(18 / 3) < 14000 + 6
    # TransUNet's own 2211 .npz slices: 93 iterations of 24 per epoch, as its 150 epochs (13950 iterations)
    assert epochs_for_iterations(14000, 2211, 1, 24) == 151
    assert epochs_for_iterations(1, 3, 2, 4) == 1
    assert epochs_for_iterations(10, 5, 8, 4) == 2, "a batch smaller than one volume's slices still takes one volume"
    for bad in ((0, 18, 8, 24), (14000, 0, 8, 24), (14000, 18, 0, 24), (14000, 18, 8, True), (14000.0, 18, 8, 24)):
        with pytest.raises(ValueError):
            epochs_for_iterations(*bad)


def _volumes(n: int) -> list[dict[str, str]]:
    return [{"image": f"/d/img/img{i:04d}.nii.gz", "label": f"/d/label/label{i:04d}.nii.gz"} for i in range(n)]


@pytest.mark.parametrize(
    "items,epochs,val_interval,per_epoch",
    [
        (_volumes(18), 2334, 167, 6),  # the 18-volume Synapse training split of raw BTCV
        (_volumes(30), 1400, 100, 10),  # more volumes: fewer epochs, the same iterations
        ([{"image": f"/d/train_npz/case0005_slice{k:03d}.npz"} for k in range(2211)], 151, 11, 93),
    ],
)
def test_the_paper_recipe_trains_about_14k_iterations_whatever_the_data(items, epochs, val_interval, per_epoch):
    parser = _parser("train.json", "paper.json")
    parser["train#datalist"] = items  # what prepare_synapse_datalist gives for that layout
    assert parser.get_parsed_content("paper_iterations") == 14000
    assert parser.get_parsed_content("batch_size") == 24
    max_epochs = parser.get_parsed_content("max_epochs")
    assert (max_epochs, parser.get_parsed_content("val_interval")) == (epochs, val_interval)
    items_per_batch = 24 // parser.get_parsed_content("train#slices_per_item")
    assert math.ceil(len(items) / items_per_batch) == per_epoch
    assert 14000 <= max_epochs * per_epoch < 14000 + per_epoch, "about 14k iterations"
    # the schedule decays over the whole budget, and the trainer runs it
    assert parser["lr_scheduler"]["total_iters"] == "@max_epochs" and parser["train#trainer"]["max_epochs"] == (
        "@max_epochs"
    )
    # the iteration budget can be changed on the command line, and --max_epochs still wins
    parser["paper_iterations"] = 600
    assert parser.get_parsed_content("max_epochs", lazy=False) == math.ceil(600 / per_epoch)
    assert parser.get_parsed_content("val_interval", lazy=False) <= math.ceil(600 / per_epoch)


def test_the_3d_paper_recipe_keeps_its_epochs():
    """The 3D configuration is ours (no TransUNet protocol to match): paper_3d.json keeps 300 epochs."""
    parser = _parser("train.json", "paper.json", "train_3d.json", "paper_3d.json")
    assert parser.get_parsed_content("max_epochs") == 300 and parser.get_parsed_content("val_interval") == 10


# ---------------------------------------------------------------------------------------------------------------
# attnseg experiment's validation cases: labels in the 8 Synapse classes whatever the layout


@pytest.mark.parametrize("layout", ["btcv", "transunet"])
def test_the_experiment_scores_labels_in_the_synapse_classes(tmp_path: Path, layout: str):
    """The runner's labels hold what LoadSynapsed gives (BTCV ids mapped to 0..8; the label array of a TransUNet
    .npy.h5 volume), as NIfTI files named like the predictions (``<case>.nii.gz``) in the source geometry."""
    import nibabel as nib
    import numpy as np

    from attnseg_monai.data import make_synapse_sample, make_synapse_transunet_sample
    from attnseg_monai.inference.experiment_eval import labels_folder, validation_items
    from attnseg_monai.transforms import load_synapse

    data = tmp_path / "data"
    if layout == "btcv":
        make_synapse_sample(data, num_cases=3, shape=(32, 32, 16))
    else:
        make_synapse_transunet_sample(data, num_train_cases=1, num_test_cases=1, shape=(32, 32, 16))
    out = tmp_path / "validation"
    items = validation_items(ROOT, out, str(data), {"ckpt_dir": NO_MODELS})
    labels = labels_folder(items, out / "labels")
    listed = json.loads((out / "datalist.json").read_text())["validation"]
    assert [i["image"] for i in items] == [i["image"] for i in listed] and items
    for item, source in zip(items, listed):
        case = Path(source["image"]).name.split(".")[0]  # img0002.nii.gz -> img0002, case0001.npy.h5 -> case0001
        assert Path(item["label"]).name == f"{case}.nii.gz" and item["image"] == source["image"]
        written = nib.load(labels / f"{case}.nii.gz")
        values = np.asarray(written.dataobj)
        expected = load_synapse(source["label"], "label")[0].numpy()  # what the bundle's validation compares
        np.testing.assert_array_equal(values, expected)
        assert values.dtype == np.uint8 and values.max() <= 8
        if layout == "btcv":
            raw = nib.load(source["label"])
            assert np.asarray(raw.dataobj).max() > 8, "the raw phantom holds BTCV ids beyond the 8 classes"
            np.testing.assert_allclose(written.affine, raw.affine, atol=1e-5)
    assert sorted(p.name for p in labels.iterdir()) == sorted(
        f"{Path(i['image']).name.split('.')[0]}.nii.gz" for i in listed
    )
