"""attention_unet bundle: geometry round trips, attention-map NIfTI, per-organ metrics in mm, recipes, the record.

The recipes are config files: ``train.json`` is the quick recipe on any data, ``paper.json`` layered on it the paper's;
a tiny paper-recipe training is then served from its record alone (width, spacing, windows, HU window).

The round trips run the bundle's real ``inference.json`` (+ ``save_attention.json``) once, with a tiny randomly
initialised network, on an oblique NIfTI (qform and sform with different codes) and on an LPS DICOM series written
here with pydicom: the predictions and attention maps must come back on the input grid with the input's header.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.metrics import compute_hausdorff_distance
from monai.networks.utils import one_hot
from monai.transforms import Compose, ScaleIntensity

from attnseg_monai.bundle import BUNDLES_DIR, read_record, record_path
from attnseg_monai.bundle.attention_maps import AttentionMapsd, sliding_window_attention_maps
from attnseg_monai.data import make_pancreas_sample
from attnseg_monai.networks.nets import GridAttentionUNet
from tests.bundles.cases.attention_unet import CASE as TINY
from tests.bundles.helpers import config_strings, configs, copy_bundle, run_workflow
from tests.inference.helpers import write_dicom_series

ROOT = BUNDLES_DIR / "attention_unet"
NO_MODELS = str(Path("/nonexistent") / "attnseg-test-models")
CONFIGS = ROOT / "configs"
FEATURES = [4, 8, 16, 32]  # gates on levels 1 and 2
LEVELS = ("level1", "level2")
# tiny windows, and a coarse working grid so the inputs below are one or two windows
OVERRIDES = {"network_def#features": FEATURES, "roi_size": [32, 32, 32], "target_spacing": [2.0, 2.0, 4.0]}
CLASSES = {
    int(k)
    for k in json.loads((CONFIGS / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"][
        "channel_def"
    ]
}


def _parser(*names: str, **overrides) -> ConfigParser:
    """The checkout's configs as a bundle without a trained model (a model trained in the checkout would decide the
    network and the preprocessing through its record)."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / n) for n in names])
    parser.update({"bundle_root": str(ROOT), "ckpt_dir": NO_MODELS, "ckpt_path": f"{NO_MODELS}/model.pt"})
    parser.update(overrides)
    return parser


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _write_oblique_nifti(path: Path) -> nib.Nifti1Image:
    """40x34x14 int16 HU volume, LPS storage, tilted 12 deg and turned 25 deg; sform code 2, qform code 1."""
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ _rotation(2, 25) @ _rotation(0, 12) @ np.diag([1.3, 1.1, 3.2])
    affine[:3, 3] = [31.5, -12.25, -420.0]
    data = np.random.default_rng(1).integers(-150, 250, size=(40, 34, 14)).astype(np.int16)
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=2)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units(xyz="mm")
    nib.save(image, path)
    return nib.load(path)


def _write_dicom_series(folder: Path, volume: np.ndarray, spacing: tuple, origin: tuple) -> np.ndarray:
    """An axial CT series (LPS: columns to the patient's left, rows to posterior); returns its RAS affine.

    ``volume`` is indexed (column, row, slice); slice k lies at ``origin + k * spacing[2]`` along superior.
    """
    write_dicom_series(folder, volume, spacing, origin)
    lps = np.diag([*spacing, 1.0])
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS world -> RAS world


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> dict:
    """inference.json + save_attention.json run once over an oblique NIfTI and an LPS DICOM series folder."""
    tmp = tmp_path_factory.mktemp("attention_unet_geometry")
    root = copy_bundle("attention_unet", tmp)
    (root / "models").mkdir()
    torch.manual_seed(0)
    net = GridAttentionUNet(3, 1, 3, features=FEATURES, deep_supervision=True)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    inputs, out = tmp / "inputs", tmp / "out"
    inputs.mkdir()
    oblique = _write_oblique_nifti(inputs / "oblique.nii.gz")
    volume = np.random.default_rng(2).integers(-150, 250, size=(36, 30, 10)).astype(np.int16)
    dicom_affine = _write_dicom_series(inputs / "series_lps", volume, (0.9, 1.1, 3.0), (-20.0, 35.5, -310.0))
    run_workflow(
        configs(ROOT, "inference.json", "save_attention.json"),
        ROOT,
        "infer",
        "run",
        bundle_root=str(root),
        dataset_dir=str(inputs),
        output_dir=str(out),
        **OVERRIDES,
    )
    return {"out": out, "oblique": oblique, "dicom": (volume.shape, dicom_affine)}


def _labels_ok(image: nib.Nifti1Image) -> None:
    assert image.get_data_dtype() == np.uint8
    values = set(np.unique(np.asarray(image.dataobj)).tolist())
    assert values <= CLASSES, f"labels {values} outside the channel_def indices {CLASSES}"


def _same_header_geometry(written: nib.Nifti1Image, source: nib.Nifti1Image) -> None:
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    for key in ("qform_code", "sform_code"):
        assert int(written.header[key]) == int(source.header[key]), key
    np.testing.assert_allclose(written.header.get_qform(), source.header.get_qform(), atol=1e-5)
    np.testing.assert_allclose(written.header.get_sform(), source.header.get_sform(), atol=1e-5)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)


def test_oblique_nifti_prediction_keeps_the_header_geometry(predicted):
    seg = nib.load(predicted["out"] / "oblique_seg.nii.gz")
    _same_header_geometry(seg, predicted["oblique"])
    assert (int(seg.header["qform_code"]), int(seg.header["sform_code"])) == (1, 2)
    _labels_ok(seg)


def test_lps_dicom_series_prediction_lies_on_the_series_grid(predicted):
    shape, affine = predicted["dicom"]
    seg = nib.load(predicted["out"] / "series_lps_seg.nii.gz")
    assert seg.shape == shape
    np.testing.assert_allclose(seg.affine, affine, atol=1e-4)  # the RAS affine the DICOM tags define
    assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    assert (int(seg.header["qform_code"]), int(seg.header["sform_code"])) == (1, 1)
    _labels_ok(seg)


@pytest.mark.parametrize("case", ["oblique", "series_lps"])
def test_attention_maps_are_written_in_the_input_geometry(predicted, case):
    seg = nib.load(predicted["out"] / f"{case}_seg.nii.gz")
    for level in LEVELS:
        alpha = nib.load(predicted["out"] / f"{case}_attention_{level}.nii.gz")
        _same_header_geometry(alpha, seg)
        values = np.asarray(alpha.dataobj)
        assert alpha.get_data_dtype() == np.float32
        assert 0.0 <= values.min() and values.max() <= 1.0 and values.std() > 0
    assert not list(predicted["out"].glob(f"{case}_attention_level3*")), "level 3 is the bottleneck: no gate"


def test_attention_maps_are_off_by_default():
    parser = _parser("inference.json", **{"network_def#features": FEATURES})
    assert parser.get_parsed_content("save_attention_maps") is False
    transforms = parser.get_parsed_content("postprocessing").transforms
    names = [type(t).__name__ for t in transforms]
    assert "AttentionMapsd" not in names and names[-2:] == ["SaveImaged", "CastToTyped"]
    # MONAI Label drops SaveImaged and returns "pred" as it is: uint8 labels with the channel kept (3D: no squeeze)
    assert "SqueezeDimd" not in names
    assert transforms[-1]({"pred": torch.full((1, 2, 2, 2), 2.0)})["pred"].dtype == torch.uint8


def test_sliding_window_maps_equal_one_whole_volume_pass():
    torch.manual_seed(0)
    net = GridAttentionUNet(3, 1, 2, features=[4, 8, 16]).eval()
    x = torch.rand(1, 1, 32, 32, 16)
    whole = net.attention_maps(x, at_input_size=True)["level1"]
    maps, names = sliding_window_attention_maps(x, net, roi_size=(32, 32, 16))
    assert names == ["level1"]
    torch.testing.assert_close(maps, whole, rtol=1e-5, atol=1e-6)
    tiled, _ = sliding_window_attention_maps(x, net, roi_size=(16, 16, 16), overlap=0.5)
    assert tiled.shape == whole.shape and 0 <= float(tiled.min()) and float(tiled.max()) <= 1
    assert float((tiled - whole).abs().mean()) < 0.25, "windows see less context, but the gates stay similar"


def test_attention_maps_refuse_unusable_networks_and_transforms(tmp_path):
    image = MetaTensor(torch.rand(1, 16, 16, 16))
    with pytest.raises(ValueError, match="attention_maps"):
        AttentionMapsd("image", network=torch.nn.Identity(), roi_size=16, output_dir=str(tmp_path))({"image": image})
    ungated = GridAttentionUNet(3, 1, 2, features=[4, 8], attention_levels=()).eval()
    with pytest.raises(ValueError, match="no attention gate"):
        AttentionMapsd("image", network=ungated, roi_size=16, output_dir=str(tmp_path))({"image": image})
    with pytest.raises(ValueError, match="invertible"):
        AttentionMapsd("image", network=ungated, roi_size=16, output_dir=str(tmp_path), transform=ScaleIntensity())
    with pytest.raises(ValueError, match="NIfTI"):
        AttentionMapsd("image", network=ungated, roi_size=16, output_dir=str(tmp_path), output_ext=".png")
    assert AttentionMapsd("image", network=ungated, roi_size=16, output_dir=str(tmp_path), transform=Compose([]))


def _case(spacing: tuple[float, float, float]) -> dict:
    """One evaluated case as the evaluator's postprocessing leaves it: one-hot pred and label with the affine.

    Pancreas: a 10x10x4 box, predicted one slice higher. Cancer: a one-voxel-thick 4x4 plate away from it,
    predicted one slice higher, so every surface distance of the cancer is exactly one slice spacing.
    """
    label = torch.zeros(1, 40, 40, 12)
    pred = torch.zeros_like(label)
    label[0, 10:20, 10:20, 4:8] = 1
    pred[0, 10:20, 10:20, 5:9] = 1
    label[0, 28:32, 28:32, 6] = 2
    pred[0, 28:32, 28:32, 7] = 2
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    return {
        "pred": MetaTensor(one_hot(pred[None], 3)[0], affine=affine),
        "label": MetaTensor(one_hot(label[None], 3)[0], affine=affine),
        "image": MetaTensor(
            torch.zeros(1, 40, 40, 12), affine=affine, meta={"filename_or_obj": f"case_{spacing[2]}mm"}
        ),
    }


def test_evaluation_metrics_per_organ_in_mm(tmp_path):
    parser = _parser("inference.json", "evaluate.json", output_dir=str(tmp_path))
    engine = Engine(lambda eng, batch: batch)
    metrics = {**parser.get_parsed_content("key_metric"), **parser.get_parsed_content("additional_metrics")}
    for name, handler in metrics.items():
        handler.attach(engine, name)
    saver = parser.get_parsed_content("handlers#3")
    saver.attach(engine)
    spacings = [(0.8, 0.8, 2.5), (1.0, 1.0, 1.0)]
    cases = [_case(s) for s in spacings]
    state = engine.run([[c] for c in cases], max_epochs=1)
    m = state.metrics
    # Dice by hand: pancreas 2 * (10*10*3) / (400 + 400); cancer plates do not overlap
    assert m["dice_pancreas"] == pytest.approx(0.75)
    assert m["dice_cancer"] == pytest.approx(0.0)
    assert m["mean_dice"] == pytest.approx(0.375)
    # cancer: every directed distance is one slice: 2.5 mm and 1.0 mm, so HD95 = ASD = their mean
    assert m["hd95_cancer"] == pytest.approx(1.75) and m["asd_cancer"] == pytest.approx(1.75)
    # pancreas HD95 equals MONAI's reference with each case's spacing, and the spacing changes it
    reference = [
        float(compute_hausdorff_distance(c["pred"][None, :2], c["label"][None, :2], percentile=95, spacing=s)[0, 0])
        for c, s in zip(cases, spacings)
    ]
    assert m["hd95_pancreas"] == pytest.approx(np.mean(reference), rel=1e-5)
    assert reference[0] != pytest.approx(reference[1])
    # per-case CSV (class0 = pancreas, class1 = cancer) and its summary
    rows = (tmp_path / "hd95_raw.csv").read_text().splitlines()
    assert rows[0] == "filename,class0,class1,mean" and len(rows) == 3
    assert [float(r.split(",")[2]) for r in rows[1:]] == pytest.approx([2.5, 1.0])
    assert (tmp_path / "mean_dice_summary.csv").is_file() and (tmp_path / "asd_raw.csv").is_file()
    assert "hd95_pancreas" in (tmp_path / "metrics.csv").read_text()


def test_no_setting_depends_on_where_the_data_lies():
    """``use_embedded_data`` chooses (or generates) the data and nothing else; no side file records a recipe."""
    data_ids = {"datalist", "train#datalist", "validate#datalist"}
    names = ("train.json", "paper.json", "inference.json", "evaluate.json", "save_attention.json")
    for name in (*names, "train_2d.json", "inference_2d.json", "evaluate_2d.json"):
        text = (CONFIGS / name).read_text()
        assert "recipe.json" not in text and "write_recipe" not in text, name
        users = {i for i, v in config_strings(json.loads(text)) if "@use_embedded_data" in v}
        assert users <= data_ids, f"{name}: {sorted(users - data_ids)} switch on the data folder"


@pytest.mark.parametrize(
    "name",
    [
        "train.json",
        "paper.json",
        "inference.json",
        "evaluate.json",
        "save_attention.json",
        "train_2d.json",
        "inference_2d.json",
        "evaluate_2d.json",
    ],
)
def test_configs_call_helpers_not_clever_expressions(name: str):
    """Side effects are not sequenced in lists (``[f(), g(), x][-1]``), datalists are one helper call with plain
    arguments (no ``x if c else y``), and the per-class metrics take a helper, not a nested lambda."""
    for key, value in config_strings(json.loads((CONFIGS / name).read_text())):
        assert "][-1]" not in value, f"{name}: {key} sequences side effects in a list"
        assert "lambda " not in value or key.endswith("batch_transform"), f"{name}: {key} defines a lambda"
        if key.endswith("datalist"):
            assert " if " not in value and value.count("attnseg_monai.") == 1, f"{name}: {key}: {value}"


def test_train_json_is_the_quick_recipe_whatever_the_data(tmp_path):
    task = tmp_path / "Task07_Pancreas"
    make_pancreas_sample(task, num_cases=6, num_test=0, shape=(48, 48, 16), spacing=(2.5, 2.5, 8.0))
    for extra in ({}, {"dataset_dir": str(task), "output_dir": str(tmp_path / "eval")}):
        parser = _parser("train.json", **extra)
        assert parser.get_parsed_content("use_embedded_data") is (not extra)
        assert parser.get_parsed_content("recipe") == "quick"
        assert parser.get_parsed_content("target_spacing") == [1.6, 1.6, 2.5]
        assert parser.get_parsed_content("train_patch_size") == [48, 48, 32]
        assert parser.get_parsed_content("roi_size") == [64, 64, 32]
        assert parser.get_parsed_content("max_epochs") == parser["quick_epochs"] == 60
        assert parser.get_parsed_content("val_interval") == 20
        assert parser.get_parsed_content("learning_rate") == 0.003
        # the quick recipe: narrow network, foreground-centred patches x4, Dice + CE, cosine schedule, bf16 autocast
        net = parser.get_parsed_content("network_def")
        assert net.features == (8, 16, 32, 64, 128)
        # our choice for the quick recipe: one gate per level, a loss on every level's output (paper.json: authors')
        assert net.gates[0].heads == 1 and net.attention_levels == (1, 2, 3) and net.deep_supervision
        assert parser.get_parsed_content("train#random_transforms#0#neg") == 0
        assert parser.get_parsed_content("train#random_transforms#0#num_samples") == 4
        assert parser.get_parsed_content("loss").loss.lambda_ce == 1.0
        assert parser.get_parsed_content("train#random_transforms#3#scale_range") == [0.15] * 3
        assert type(parser.get_parsed_content("lr_scheduler")).__name__ == "CosineAnnealingLR"
        assert parser.get_parsed_content("train#trainer#iteration_update").precision == "auto"
        spec = parser.get_parsed_content("record")
        assert spec.recipe == "quick"
        assert spec.preprocessing == {
            "target_spacing": [1.6, 1.6, 2.5],
            "hu_window": [-100.0, 240.0],
            "roi_size": [64, 64, 32],
        }
    train, val = parser.get_parsed_content("train#datalist"), parser.get_parsed_content("validate#datalist")
    assert len(train) == 5 and len(val) == 1 and all(Path(i["label"]).is_file() for i in train + val)
    assert json.loads((tmp_path / "eval" / "datalist.json").read_text())["validation"]


def test_paper_json_is_the_papers_recipe():
    """train.json + paper.json: the authors' CT setting (Oktay et al., their config_unet_ct_multi_att_dsv.json)."""
    assert json.loads((CONFIGS / "paper.json").read_text())["recipe"] == "paper"
    parser = _parser("train.json", "paper.json")
    assert parser.get_parsed_content("recipe") == "paper"
    assert parser.get_parsed_content("target_spacing") == [2.0, 2.0, 2.0]
    assert parser.get_parsed_content("train_patch_size") == [160, 160, 96]
    assert parser.get_parsed_content("roi_size") == [160, 160, 96]
    assert parser.get_parsed_content("max_epochs") == parser["paper_epochs"] == 1000
    assert parser.get_parsed_content("val_interval") == 10
    net = parser.get_parsed_content("network_def")
    assert net.features == (16, 32, 64, 128, 256)
    # the authors' released network: two gates per level ("multi_att"), trained on the fused output only ("dsv")
    assert net.gates[0].heads == 2 and net.attention_levels == (1, 2, 3) and not net.deep_supervision
    assert isinstance(net.train()(torch.zeros(2, 1, 16, 16, 16)), torch.Tensor)
    # one patch per case, 2 foreground-centred : 1 background-centred
    assert parser.get_parsed_content("train#random_transforms#0#num_samples") == 1
    assert parser.get_parsed_content("train#random_transforms#0#neg") == 1
    # soft Dice only, scaling 0.7-1.3, Adam 1e-4 with a x0.1 step every 250 epochs
    assert parser.get_parsed_content("loss").loss.lambda_ce == 0.0
    assert parser.get_parsed_content("train#random_transforms#3#scale_range") == [0.3, 0.3, 0.3]
    optimizer = parser.get_parsed_content("optimizer")
    assert optimizer.defaults["lr"] == 1e-4 and optimizer.defaults["weight_decay"] == 1e-6
    scheduler = parser.get_parsed_content("lr_scheduler")
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert (scheduler.step_size, scheduler.gamma) == (250, 0.1) and scheduler.optimizer is optimizer
    # what inference must repeat goes into the record
    spec = parser.get_parsed_content("record")
    assert spec.recipe == "paper"
    assert spec.preprocessing == {"target_spacing": [2.0] * 3, "hu_window": [-100.0, 240.0], "roi_size": [160, 160, 96]}


@pytest.mark.usefixtures("one_thread")
def test_a_tiny_paper_training_is_served_as_recorded(tmp_path):
    """Train (paper recipe, a tiny non-default width, another HU window), then inference and evaluation from the
    record alone: width, spacing, windows and HU window are the trained ones without repeating any of them."""
    root = copy_bundle("attention_unet", tmp_path)
    sample = TINY["infer"]["embedded_sample"]
    trained = {"features": [4, 8, 16, 32, 64], "roi_size": [32, 32, 32], "hu_window": [-150.0, 250.0]}
    run_workflow(
        configs(root, "train.json", "paper.json"),
        root,
        "train",
        "training",
        bundle_root=str(root),
        paper_epochs=1,
        val_interval=1,
        train_patch_size=[32, 32, 32],
        embedded_sample=sample,
        **trained,
    )
    preprocessing = {"target_spacing": [2.0, 2.0, 2.0], "hu_window": [-150.0, 250.0], "roi_size": [32, 32, 32]}
    for name in ("model.pt", "model_final.pt"):
        record = read_record(root / "models" / name).record
        assert record is not None and record.recipe == "paper" and record.bundle == "attention_unet", name
        assert list(record.network["features"]) == trained["features"]
        assert record.preprocessing == preprocessing
        assert record.classes == {"0": "background", "1": "pancreas", "2": "cancer"}

    def check(parser: ConfigParser, spacing: list, window: list, roi: list, features: tuple) -> None:
        assert parser.get_parsed_content("target_spacing") == spacing
        assert parser.get_parsed_content("hu_window") == window
        assert parser.get_parsed_content("roi_size") == roi
        assert parser.get_parsed_content("network_def").features == features
        steps = {type(t).__name__: t for t in parser.get_parsed_content("preprocessing").transforms}
        assert steps["ResampleToSpacingd"].pixdim == tuple(spacing)
        scaler = steps["ScaleIntensityRanged"].scaler
        assert [scaler.a_min, scaler.a_max] == window

    recorded = ([2.0, 2.0, 2.0], [-150.0, 250.0], [32, 32, 32], (4, 8, 16, 32, 64))
    # the bundle's own configs, nothing but the bundle folder given: inference and evaluation as trained
    for files in (["inference.json"], ["inference.json", "evaluate.json"], ["inference.json", "save_attention.json"]):
        parser = ConfigParser()
        parser.read_config(configs(root, *files))
        parser["bundle_root"] = str(root)
        check(parser, *recorded)
    assert parser.get_parsed_content("attention_maps").roi_size == [32, 32, 32]
    # and it runs: the strict loader takes every tensor of model.pt into the recorded network
    run_workflow(configs(root, "inference.json"), root, "infer", "run", embedded_sample=sample)
    written = sorted(p.name for p in (root / "eval" / "predictions").glob("*_seg.nii.gz"))
    assert len(written) == 2, written
    # the weights copied elsewhere without their record: the quick recipe's defaults, which the weights do not fit
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(root / "models" / "model.pt", elsewhere / "model.pt")
    bare = ConfigParser()
    bare.read_config(configs(root, "inference.json"))
    bare.update({"bundle_root": str(root), "ckpt_path": str(elsewhere / "model.pt")})
    assert bare.get_parsed_content("target_spacing") == [1.6, 1.6, 2.5]
    assert bare.get_parsed_content("hu_window") == [-100.0, 240.0]
    assert bare.get_parsed_content("roi_size") == [64, 64, 32]
    with pytest.raises(RuntimeError) as info:
        bare.get_parsed_content("network_def")
    assert "do not fit" in str(info.value.__cause__)
    # with its record beside it, the checkpoint elsewhere decides again (its own folder, not the bundle's models/)
    shutil.copy(record_path(root / "models" / "model.pt"), record_path(elsewhere / "model.pt"))
    shutil.rmtree(root / "models")
    moved = ConfigParser()
    moved.read_config(configs(root, "inference.json"))
    moved.update({"bundle_root": str(root), "ckpt_path": str(elsewhere / "model.pt")})
    check(moved, *recorded)
