"""attention_unet's 2D configuration, the seed's own experiment (optic disc and cup, Drishti-GS1 layout):
``train_2d.json`` layered on ``train.json``, ``inference_2d.json`` on ``inference.json``, ``evaluate_2d.json`` on
both; the record of a 2D model names its own classes and is refused where the 3D task is expected (and the other
way round); a tiny 2D training, inference and evaluation run end to end; and the two tables of experiments (2D and
3D) run two rows for one epoch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import BasicUNetPlusPlus

from attnseg_monai.bundle import BUNDLES_DIR, read_record
from attnseg_monai.bundle.record import BundleRecord, RecordError, record_path
from attnseg_monai.data import make_drishti_sample
from attnseg_monai.inference.experiment import run_experiment
from attnseg_monai.inference.experiment_spec import check_metrics, load_table
from attnseg_monai.io.images import read_header, read_pixels
from attnseg_monai.networks import network_config
from attnseg_monai.networks.nets import GridAttentionUNet, MonaiNetwork
from tests.bundles.helpers import configs, copy_bundle, overrides, run_workflow

ROOT = BUNDLES_DIR / "attention_unet"
CONFIGS = ROOT / "configs"
NO_MODELS = str(Path("/nonexistent") / "attnseg-test-models")
CLASSES_2D = {"0": "background", "1": "rim", "2": "cup"}
CLASSES_3D = {"0": "background", "1": "pancreas", "2": "cancer"}
# tiny: 3 levels (inputs multiples of 8), a 64 x 48 working size, two training images and one validation image
SAMPLE = {"num_train": 2, "num_test": 1, "width": 96, "height": 64}
TINY = {"features": [4, 8, 16, 32], "working_size": [64, 48], "embedded_sample": SAMPLE, "num_folds": 1}
ROWS = {"unet": ([], 1, True), "attention_unet": (None, 1, True), "attention_unet_authors": (None, 2, False)}


def _parser(*names: str, **extra) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / n) for n in names])
    parser.update({"bundle_root": str(ROOT), "ckpt_dir": NO_MODELS, **extra})
    return parser


def test_train_2d_is_the_drishti_configuration(tmp_path: Path):
    make_drishti_sample(tmp_path / "drishti", **SAMPLE)
    parser = _parser("train.json", "train_2d.json", dataset_dir=str(tmp_path / "drishti"), num_folds=2)
    parser["output_dir"] = str(tmp_path / "eval")
    assert parser.get_parsed_content("use_embedded_data") is False
    assert parser.get_parsed_content("recipe") == "drishti_gs"
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, GridAttentionUNet) and (net.spatial_dims, net.in_channels, net.out_channels) == (2, 3, 3)
    assert net.features == (16, 32, 64, 128, 256) and net.attention_levels == (1, 2, 3) and net.deep_supervision
    spec = parser.get_parsed_content("record")
    assert spec.classes == CLASSES_2D and spec.preprocessing == {"working_size": [288, 192], "roi_size": [288, 192]}
    assert parser.get_parsed_content("max_epochs") == 40 and parser.get_parsed_content("val_interval") == 10
    train = parser.get_parsed_content("train#datalist")
    val = parser.get_parsed_content("validate#datalist")
    assert [Path(i["image"]).parent.parent.name for i in train] == ["Training"] * 2
    assert [Path(i["image"]).name for i in val] == ["drishtiGS_001.png"]
    # one training batch through the configured transforms, network and loss
    batch = parser.get_parsed_content("train#preprocessing")(train[0])
    assert batch["image"].shape == (3, 288, 192) and set(torch.unique(batch["label"]).tolist()) <= {0, 1, 2}
    loss = parser.get_parsed_content("loss")(net.train()(batch["image"][None]), batch["label"][None])
    assert torch.isfinite(loss)
    # the embedded default and the model folder are the 2D configuration's own, beside the 3D task's
    default = _parser("train.json", "train_2d.json")
    assert default.get_parsed_content("embedded_dataset_dir") == f"{ROOT}/data/generated/drishti_gs"
    assert _parser("train.json", "train_2d.json").get_parsed_content("output_dir") == f"{ROOT}/eval/drishti_gs"
    bare = ConfigParser()
    bare.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "train_2d.json")])
    bare["bundle_root"] = str(ROOT)
    assert bare.get_parsed_content("ckpt_dir") == f"{ROOT}/models/drishti_gs"


def test_inference_2d_builds_the_2d_network_and_segments_the_test_images(tmp_path: Path):
    make_drishti_sample(tmp_path / "drishti", **SAMPLE)
    parser = _parser("inference.json", "inference_2d.json", dataset_dir=str(tmp_path / "drishti"))
    parser["ckpt_dir"] = NO_MODELS
    assert parser.get_parsed_content("ckpt_path") == f"{NO_MODELS}/model.pt"
    net = parser.get_parsed_content("network_def")
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (2, 3, 3)
    assert parser.get_parsed_content("working_size") == [288, 192]
    assert [Path(i["image"]).name for i in parser.get_parsed_content("datalist")] == ["drishtiGS_001.png"]
    item = parser.get_parsed_content("preprocessing")(parser.get_parsed_content("datalist")[0])
    assert item["image"].shape == (3, 288, 192)
    default = ConfigParser()  # the 2D configuration's own model folder, beside the 3D task's models/model.pt
    default.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "inference_2d.json")])
    default["bundle_root"] = str(ROOT)
    assert default.get_parsed_content("ckpt_path") == f"{ROOT}/models/drishti_gs/model.pt"


def _record(folder: Path, spatial_dims: int, classes: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    net = GridAttentionUNet(spatial_dims, 3 if spatial_dims == 2 else 1, 3, features=(4, 8, 16))
    ckpt = folder / "model.pt"
    torch.save(net.state_dict(), ckpt)
    BundleRecord("attention_unet", network_config(net), classes=classes).write(record_path(ckpt))
    return ckpt


def test_a_2d_model_and_a_3d_model_are_not_interchangeable(tmp_path: Path):
    flat = _record(tmp_path / "2d", 2, CLASSES_2D)
    volume = _record(tmp_path / "3d", 3, CLASSES_3D)
    assert read_record(flat, "attention_unet", ROOT, classes=CLASSES_2D).record.classes == CLASSES_2D
    assert read_record(volume, "attention_unet", ROOT).record.classes == CLASSES_3D
    with pytest.raises(RecordError, match=r"trained for the classes .*rim.* declares .*pancreas"):
        read_record(flat, "attention_unet", ROOT)  # the 3D task's configs
    with pytest.raises(RecordError, match=r"trained for the classes .*pancreas.* the config expects .*rim"):
        read_record(volume, "attention_unet", ROOT, classes=CLASSES_2D)
    # the 2D inference config refuses a 3D checkpoint before building anything
    parser = _parser("inference.json", "inference_2d.json")
    parser["ckpt_dir"] = str(tmp_path / "3d")
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("network_def")
    assert "the config expects" in str(info.value.__cause__ or info.value)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_2d_configuration_trains_infers_and_evaluates_end_to_end(tmp_path: Path):
    root = copy_bundle("attention_unet", tmp_path)
    run_workflow(
        configs(root, "train.json", "train_2d.json"), root, "train", "training", quick_epochs=2, val_interval=1, **TINY
    )
    models = root / "models"
    assert sorted(p.name for p in models.iterdir()) == ["drishti_gs"]  # the 3D task's models/ is untouched
    record = read_record(models / "drishti_gs" / "model.pt", "attention_unet", root, classes=CLASSES_2D).record
    assert record.classes == CLASSES_2D and record.recipe == "drishti_gs"
    assert record.network["spatial_dims"] == 2 and record.network["features"] == [4, 8, 16, 32]
    assert record.preprocessing == {"working_size": [64, 48], "roi_size": [64, 48]}
    metrics = (root / "eval" / "drishti_gs" / "metrics.csv").read_text()
    assert "val_dice_disc" in metrics and "val_dice_cup" in metrics

    # inference from the record alone: width and working size as trained; masks of the input's size
    run_workflow(configs(root, "inference.json", "inference_2d.json"), root, "infer", "run", embedded_sample=SAMPLE)
    (written,) = sorted((root / "eval" / "drishti_gs" / "predictions").glob("*_seg.png"))
    assert written.name == "drishtiGS_001_seg.png" and read_header(written).size == (96, 64)
    assert set(np.unique(read_pixels(written)).tolist()) <= {0, 1, 2}

    # evaluation: disc and cup Dice as regions (disc = labels 1 and 2)
    files = configs(root, "inference.json", "inference_2d.json", "evaluate_2d.json")
    run_workflow(files, root, "infer", "evaluating", embedded_sample=SAMPLE, num_folds=1)
    with open(root / "eval" / "drishti_gs" / "evaluation" / "metrics.csv") as handle:
        scores = dict(csv.reader(handle))
    assert {"mean_dice", "dice_disc", "dice_cup", "hd95_disc", "hd95_cup"} <= set(scores)
    assert 0.0 <= float(scores["dice_disc"]) <= 1.0


def test_the_two_tables_name_their_rows_and_metrics():
    pancreas, drishti = load_table(ROOT), load_table(ROOT, "table_drishti_gs")
    for table in (pancreas, drishti):
        check_metrics(table, ROOT)
        extra = ["unetplusplus"] if table is drishti else []  # the seed's third model of its fundus comparison
        assert [r.id for r in table.rows] == [*ROWS, *extra] and table.seed.startswith("004")
        for row in table.rows[: len(ROWS)]:
            switches = json.loads(row.overrides.read_text())
            levels, heads, supervision = ROWS[row.id]
            assert switches == {
                "network_def#attention_levels": levels,
                "network_def#attention_heads": heads,
                "network_def#deep_supervision": supervision,
            }
    assert pancreas.configs == [] and pancreas.regions == {}
    assert pancreas.metrics == ["dice_pancreas", "dice_cancer", "hd95_pancreas", "time_ms"]
    assert [p.name for p in drishti.configs] == ["train_2d.json"]
    assert drishti.regions == {"disc": [1, 2], "cup": [2]}
    assert drishti.metrics == ["dice_disc", "dice_cup", "dice_mean", "time_ms"]
    assert all([p.name for p in r.evaluation] == ["inference_2d.json"] for r in drishti.rows[: len(ROWS)])
    assert [p.name for p in drishti.rows[-1].evaluation] == ["inference_2d.json", "monai_inference.json"]


def test_the_unetplusplus_row_trains_basicunetplusplus_and_is_evaluated_from_its_record(tmp_path: Path):
    parser = _parser("train.json", "train_2d.json", "experiments/unetplusplus.json")
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, MonaiNetwork) and isinstance(net.net, BasicUNetPlusPlus)
    assert (net.spatial_dims, net.in_channels, net.out_channels, net.size_divisible_by) == (2, 3, 3, 16)
    x = torch.rand(1, 3, 64, 48)
    outputs = net.train()(x)  # deep supervision: the loss sees all four full-resolution maps
    assert isinstance(outputs, list) and len(outputs) == 4 and all(o.shape == (1, 3, 64, 48) for o in outputs)
    loss = parser.get_parsed_content("loss")(outputs, torch.randint(0, 3, (1, 1, 64, 48)))
    assert torch.isfinite(loss)
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    record = parser.get_parsed_content("record").record_for(net)
    assert record.classes == CLASSES_2D
    record.write(record_path(checkpoint))
    names = ["inference.json", "inference_2d.json", "experiments/monai_inference.json"]
    infer = _parser(*names, ckpt_path=str(checkpoint))
    built = infer.get_parsed_content("network_def")
    assert isinstance(built, MonaiNetwork) and network_config(built) == network_config(net)
    assert infer.get_parsed_content("inferer").size_divisible_by == 16
    with pytest.raises(Exception) as err:  # noqa: B017 - without the row's file the record refuses GridAttentionUNet
        _parser("inference.json", "inference_2d.json", ckpt_path=str(checkpoint)).get_parsed_content("network_def")
    cause = err.value
    while cause is not None and not isinstance(cause, RecordError):
        cause = cause.__cause__
    assert cause is not None and "MonaiNetwork" in str(cause)


@pytest.mark.parametrize("table", ["table", "table_drishti_gs"])
@pytest.mark.parametrize("row", list(ROWS))
def test_a_row_builds_its_network_in_its_table(table: str, row: str):
    extra = ["train_2d.json"] if table == "table_drishti_gs" else []
    net = _parser("train.json", *extra, f"experiments/{row}.json").get_parsed_content("network_def")
    levels, heads, supervision = ROWS[row]
    assert net.spatial_dims == (2 if extra else 3)
    assert net.attention_levels == (() if levels == [] else (1, 2, 3))
    assert net.gates[0].heads == heads if levels is None else not hasattr(net.gates[0], "heads")
    assert net.deep_supervision is supervision


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_both_tables_run_two_rows_for_one_epoch(tmp_path: Path):
    root = copy_bundle("attention_unet", tmp_path)
    runs = {
        "table_drishti_gs": ("unet,attention_unet_authors", TINY, {}),
        "table": ("unet,attention_unet", overrides("attention_unet", "train"), overrides("attention_unet", "infer")),
    }
    for table, (rows, train, infer) in runs.items():
        out = tmp_path / table
        result = run_experiment(
            root,
            table=table,
            rows=rows,
            epochs=1,
            out=out,
            overrides=train,
            eval_overrides={k: v for k, v in infer.items() if not k.startswith("network_def")},
            parallel=2,
            device="cpu",
            trust_bundle=True,
            progress=False,
        )
        logs = [p.read_text()[-2000:] for p in out.glob("rows/*/train.log")]
        assert result.ok, ([(r.id, r.reason) for r in result.rows], logs)
        first, second = rows.split(",")
        nets = {}
        for row in (first, second):
            classes = CLASSES_2D if table == "table_drishti_gs" else None
            nets[row] = read_record(out / "rows" / row / "models" / "model.pt", "attention_unet", root, classes)
        assert nets[first].record.network["attention_levels"] == []
        assert nets[second].record.network["attention_levels"] is None
        by_row = {r.id: r for r in result.rows}
        assert [c["case"] for c in by_row[first].cases] == [c["case"] for c in by_row[second].cases]
        text = result.table_md.read_text()
        if table == "table_drishti_gs":
            assert (
                nets[second].record.network["attention_heads"] == 2 and nets[first].record.network["spatial_dims"] == 2
            )
            assert "| row | Dice disc | Dice cup | mean Dice | time (ms/image) | n |" in text
            assert [c["case"] for c in by_row[first].cases] == ["drishtigs_001"]
            assert 0.0 <= by_row[first].cases[0]["dice_disc"] <= 1.0
        else:
            assert "| row | Dice pancreas | Dice cancer | HD95 pancreas (mm) | time (ms/image) | n |" in text
            assert len(by_row[first].cases) == 2
