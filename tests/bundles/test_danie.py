"""danie bundle: Synapse readers through the bundle's loading, per-organ tables with known answers, empty-organ
policies, geometry of written predictions, the 3D configuration.

The table and geometry tests run the bundle's own inference/evaluate workflows with :class:`IntensityOracle` in
place of DANIE: the hand-made CT encodes its intended prediction in its HU values (class ``c`` at ``-125 + 50 c``
HU, i.e. ``c / 8`` after the [-125, 275] window), so the whole pipeline -- loading, HU window, slice-wise inference,
``Invertd``, writing, scoring -- is exercised with predictions whose scores are computed by hand below.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Resize

from attnseg_monai.bundle import BUNDLES_DIR, read_record, record_path
from attnseg_monai.bundle.danie import NETWORK_PRESETS, danie_preset, slices_per_item
from attnseg_monai.data import (
    BTCV_TO_SYNAPSE8,
    SYNAPSE_CLASSES,
    make_synapse_sample,
    make_synapse_transunet_sample,
)
from attnseg_monai.networks import network_config
from attnseg_monai.networks.nets.danie import DANIE_PRESETS
from attnseg_monai.transforms import LoadSynapsed
from tests.bundles.helpers import config_strings, configs, copy_bundle, run_workflow
from tests.ct_series import write_ct_slices

ROOT = BUNDLES_DIR / "danie"
CONFIGS = ROOT / "configs"
SMALL = (32, 32, 16)  # phantom shape for the reader tests
SYNAPSE_TO_BTCV = {v: k for k, v in BTCV_TO_SYNAPSE8.items() if v}
TINY_NET = {
    "network_def#embed_dims": [8, 16, 32, 64],
    "network_def#depths": [1, 1, 1, 1],
    "network_def#num_heads": [1] * 4,
}


class IntensityOracle(torch.nn.Module):
    """Stands in for DANIE: logits that select class ``round(8 x)`` of a [0, 1] image (the hand-made CT's code)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        classes = torch.round(x[:, 0] * 8).clamp(0, 8).long()
        return torch.nn.functional.one_hot(classes, 9).movedim(-1, 1).float()


# ---------------------------------------------------------------------------------------------------------------
# hand-made case: spacing (2, 1, 3) mm on an oblique grid, shape (16, 12, 10)

SHAPE = (16, 12, 10)
SPACING = (2.0, 1.0, 3.0)
DIAGONAL = math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(SHAPE, SPACING)))  # sqrt(30^2 + 11^2 + 27^2)
ORGAN = {name: i for i, name in enumerate(SYNAPSE_CLASSES)}


def _affine() -> np.ndarray:
    angle = np.deg2rad(10.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rot @ np.diag(SPACING)
    affine[:3, 3] = [12.5, -40.0, -480.0]
    return affine


def _hand_made() -> tuple[np.ndarray, np.ndarray]:
    """(label, prediction) in Synapse classes; the scores of every organ are derived in the tests."""
    label = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    # aorta: perfect
    label[2:5, 2:6, 2:7] = pred[2:5, 2:6, 2:7] = ORGAN["aorta"]
    # liver: a plate 2 voxels thick along i, predicted one voxel (2 mm) further
    label[8:10, 1:10, 1:8] = ORGAN["liver"]
    pred[9:11, 1:10, 1:8] = ORGAN["liver"]
    # stomach: a plate 2 voxels thick along k, predicted one slice (3 mm) further
    label[11:15, 1:6, 2:4] = ORGAN["stomach"]
    pred[11:15, 1:6, 3:5] = ORGAN["stomach"]
    # right kidney: missed; left kidney: predicted but absent (false alarm)
    label[2:5, 7:11, 7:10] = ORGAN["kidney_right"]
    pred[5:7, 7:10, 7:9] = ORGAN["kidney_left"]
    # gallbladder, pancreas, spleen: in neither
    return label, pred


def _write_case(folder: Path, name: str = "0001") -> tuple[dict[str, str], np.ndarray, np.ndarray]:
    """Raw BTCV files: the image encodes the prediction in HU, the label holds BTCV ids."""
    label, pred = _hand_made()
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "label").mkdir(parents=True, exist_ok=True)
    hu = (-125 + 50 * pred.astype(np.int16)).astype(np.int16)
    btcv = np.zeros_like(label)
    for synapse, btcv_id in SYNAPSE_TO_BTCV.items():
        btcv[label == synapse] = btcv_id
    btcv[0, 0, 0] = 9  # inferior vena cava: not a Synapse organ, must map to background
    item = {"image": str(folder / "img" / f"img{name}.nii.gz"), "label": str(folder / "label" / f"label{name}.nii.gz")}
    for path, array in ((item["image"], hu), (item["label"], btcv)):
        image = nib.Nifti1Image(array, _affine())
        image.header.set_xyzt_units("mm")
        image.set_qform(_affine(), code=1)
        image.set_sform(_affine(), code=2)
        nib.save(image, path)
    return item, label, pred


def _oracle_overrides(tmp: Path, **extra) -> dict:
    return {
        "bundle_root": str(ROOT),
        "eval_dir": str(tmp / "eval"),
        "ckpt_dir": str(tmp / "models"),
        "dataset_dir": str(tmp / "data"),
        "network_def": {"_target_": "tests.bundles.test_danie.IntensityOracle"},
        "handlers#0": {"_target_": "StatsHandler", "iteration_log": False},
        **extra,
    }


EXPECTED_EXCLUDE = {  # organ: (dice, hd95 mm, iou, asd mm, status)
    "aorta": (1.0, 0.0, 1.0, 0.0, "evaluated"),
    "gallbladder": (math.nan, math.nan, math.nan, math.nan, "both_empty"),
    "kidney_left": (0.0, DIAGONAL, 0.0, DIAGONAL, "gt_empty"),
    "kidney_right": (0.0, DIAGONAL, 0.0, DIAGONAL, "pred_empty"),
    # 2-voxel plates shifted by one voxel: half the voxels overlap (Dice 2N/4N, IoU N/3N); every voxel is an edge
    # voxel; half the edge distances are 0 and half one voxel (2 mm along i, 3 mm along k): HD95 = 1 voxel, ASD = 1/2
    "liver": (0.5, 2.0, 1 / 3, 1.0, "evaluated"),
    "pancreas": (math.nan, math.nan, math.nan, math.nan, "both_empty"),
    "spleen": (math.nan, math.nan, math.nan, math.nan, "both_empty"),
    "stomach": (0.5, 3.0, 1 / 3, 1.5, "evaluated"),
}
# TransUNet's calculate_metric_percase: in neither -> (0, 0); predicted only -> (1, 0); missed -> (0, 0)
EXPECTED_TRANSUNET = {
    "aorta": (1.0, 0.0),
    "gallbladder": (0.0, 0.0),
    "kidney_left": (1.0, 0.0),
    "kidney_right": (0.0, 0.0),
    "liver": (0.5, 2.0),
    "pancreas": (0.0, 0.0),
    "spleen": (0.0, 0.0),
    "stomach": (0.5, 3.0),
}


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict:
    """The bundle's evaluate workflow (inference.json + evaluate.json) run on the hand-made case, both policies."""
    tmp = tmp_path_factory.mktemp("danie_table")
    item, label, pred = _write_case(tmp / "data")
    out = {"item": item, "label": label, "pred": pred, "tmp": tmp}
    for policy in ("exclude", "transunet"):
        eval_dir = tmp / f"eval_{policy}"
        run_workflow(
            configs(ROOT, "inference.json", "evaluate.json"),
            ROOT,
            "infer",
            "evaluating",
            **_oracle_overrides(
                tmp, eval_dir=str(eval_dir), datalist=[item], slice_size=list(SHAPE[:2]), empty_policy=policy
            ),
        )
        out[policy] = eval_dir / "evaluation"
    return out


def test_per_organ_table_known_answers_in_mm(evaluated):
    folder = evaluated["exclude"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["distance_units"] == "mm" and summary["cases"] == 1 and summary["hd_mode"] == "pooled"
    assert summary["organs"] == list(SYNAPSE_CLASSES[1:])
    for organ, (dice, hd95, iou, asd, status) in EXPECTED_EXCLUDE.items():
        got = summary["per_organ"][organ]
        for metric, want in (("dice", dice), ("hd95", hd95), ("iou", iou), ("asd", asd)):
            assert _close(got[metric]["mean"], want), f"{organ} {metric}: {got[metric]['mean']} != {want}"
        assert got["status_counts"][status] == 1, f"{organ}: {got['status_counts']}"
    # the Synapse average: the mean over the organs that were scored (both-empty organs left out)
    assert _close(summary["mean"]["dice"], (1 + 0 + 0 + 0.5 + 0.5) / 5)
    assert _close(summary["mean"]["hd95"], (0 + 2 * DIAGONAL + 2 + 3) / 5)
    rows = (folder / "per_case.csv").read_text().splitlines()
    header = rows[0].split(",")
    values = dict(zip(header, rows[1].split(",")))
    assert values["case"] == "img0001" and values["status_kidney_right"] == "pred_empty"
    assert float(values["hd95_stomach"]) == pytest.approx(3.0) and values["dice_pancreas"] == "nan"
    summary_csv = (folder / "summary.csv").read_text().splitlines()
    assert summary_csv[0].startswith("organ,dice_mean,dice_std,hd95_mean")
    assert summary_csv[-1].startswith("mean,") and len(summary_csv) == 1 + 8 + 1
    table = (folder / "synapse_table.md").read_text()
    assert "| DANIE | 40.00 |" in table and "kidney right" in table
    # MONAI's own mean Dice of the same run agrees (MeanDice skips the organs absent from the label: NaN)
    assert "mean_dice" in (folder / "metrics.csv").read_text()


def test_empty_organ_policy_transunet(evaluated):
    summary = json.loads((evaluated["transunet"] / "summary.json").read_text())
    assert summary["empty_policy"] == "transunet"
    for organ, (dice, hd95) in EXPECTED_TRANSUNET.items():
        assert _close(summary["per_organ"][organ]["dice"]["mean"], dice), organ
        assert _close(summary["per_organ"][organ]["hd95"]["mean"], hd95), organ
    assert _close(summary["mean"]["dice"], 3 / 8) and _close(summary["mean"]["hd95"], 5 / 8)


def test_written_prediction_has_the_input_geometry(evaluated):
    item, pred = evaluated["item"], evaluated["pred"]
    written = nib.load(evaluated["exclude"] / "img0001_seg.nii.gz")
    source = nib.load(item["image"])
    assert written.shape == source.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    assert int(written.header["sform_code"]) == 2 and int(written.header["qform_code"]) == 1
    np.testing.assert_array_equal(np.asarray(written.dataobj), pred)


def test_resized_inference_restores_the_input_grid(evaluated, tmp_path):
    """Slices resized to 32x32 for the network and the labels brought back with nearest interpolation."""
    item, pred = evaluated["item"], evaluated["pred"]
    run_workflow(
        configs(ROOT, "inference.json"),
        ROOT,
        "infer",
        "run",
        **_oracle_overrides(evaluated["tmp"], dataset_dir=item["image"], output_dir=str(tmp_path), slice_size=[32, 32]),
    )
    written = nib.load(tmp_path / "img0001_seg.nii.gz")
    source = nib.load(item["image"])
    assert written.shape == source.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    # the same steps by hand: window, area resize to 32x32, the oracle's classes, nearest resize back
    image = LoadSynapsed(keys="image")({"image": item["image"]})["image"]
    small = Resize(spatial_size=(32, 32, -1), mode="area")(image)
    classes = torch.round(small * 8).clamp(0, 8)
    expected = Resize(spatial_size=SHAPE, mode="nearest")(classes)[0].numpy().astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected)
    assert (expected == pred).mean() > 0.8  # interpolation mixes the class codes at organ borders only


def test_transunet_h5_volume_scores_in_voxels_and_keeps_its_name(tmp_path):
    label, _ = _hand_made()
    path = tmp_path / "data" / "test_vol_h5" / "case0001.npy.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:  # stored (D, rows, columns); the image encodes the label itself
        f["image"] = (label / 8.0).astype(np.float32).T
        f["label"] = label.astype(np.float32).T
    run_workflow(
        configs(ROOT, "inference.json", "evaluate.json"),
        ROOT,
        "infer",
        "evaluating",
        **_oracle_overrides(tmp_path, datalist=[{"image": str(path), "label": str(path)}], slice_size=list(SHAPE[:2])),
    )
    folder = tmp_path / "eval" / "evaluation"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["distance_units"] == "voxels"
    assert summary["per_organ"]["liver"]["dice"]["mean"] == pytest.approx(1.0)
    written = nib.load(folder / "case0001_seg.nii.gz")
    np.testing.assert_allclose(written.affine, np.eye(4))
    np.testing.assert_array_equal(np.asarray(written.dataobj), label)


def _write_dicom_series(folder: Path, classes: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """CT slices ``classes[:, :, k]`` (rows, columns) coded as HU like :func:`_write_case`; returns the RAS affine."""
    pytest.importorskip("pydicom")
    iop = np.array([1.0, 0.0, 0.0, 0.0, 0.0, -1.0])  # coronal-like: rows along L, columns along -S (LPS)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-40.0, 12.0, 60.0])
    dr, dc, dz = spacing
    n = classes.shape[2]
    write_ct_slices(
        folder,
        [-125 + 50 * classes[:, :, k].astype(np.int16) for k in range(n)],
        positions=[origin + k * dz * normal for k in range(n)],
        orientation=iop,
        pixel_spacing=(dr, dc),
        thickness=dz,
        file_names=[f"IM{n - k:04d}.dcm" for k in range(n)],  # names in reverse slice order
        rescale_intercept=-1024,
        patient_id="danie-0",
    )
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * dc, col_dir * dr, normal * dz, origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_dicom_series_folder_is_segmented_in_its_geometry(evaluated, tmp_path):
    """A DICOM series folder as ``--dataset_dir``: ITK reads it, the NIfTI written has the series' RAS geometry."""
    pytest.importorskip("itk")
    classes = np.transpose(evaluated["pred"], (1, 0, 2))  # (rows, columns, slices) = (12, 16, 10)
    affine = _write_dicom_series(tmp_path / "series", classes, spacing=(1.5, 0.75, 2.5))
    out = tmp_path / "out"
    run_workflow(
        configs(ROOT, "inference.json"),
        ROOT,
        "infer",
        "run",
        **_oracle_overrides(tmp_path, dataset_dir=str(tmp_path / "series"), output_dir=str(out), slice_size=[16, 12]),
    )
    written = nib.load(out / "series_seg.nii.gz")
    assert written.shape == SHAPE and written.get_data_dtype() == np.uint8  # ITK: (columns, rows, slices)
    np.testing.assert_allclose(written.affine, affine, atol=1e-4)
    assert written.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(np.asarray(written.dataobj), evaluated["pred"])


# ---------------------------------------------------------------------------------------------------------------
# readers wired through the bundle's loading


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("danie_data")
    make_synapse_sample(tmp / "btcv", num_cases=5, shape=SMALL)
    make_synapse_transunet_sample(tmp / "transunet", num_train_cases=1, num_test_cases=1, shape=SMALL)
    return {"btcv": tmp / "btcv", "transunet": tmp / "transunet", "tmp": tmp}


def _train_parser(dataset_dir: Path, out: Path, *extra_files: str, **overrides) -> ConfigParser:
    """train.json + paper.json (the paper's recipe) on a real-layout folder, tiny network."""
    parser = ConfigParser()
    parser.read_config(configs(ROOT, "train.json", "paper.json", *extra_files))
    parser.update(
        {
            "bundle_root": str(ROOT),
            "dataset_dir": str(dataset_dir),
            "output_dir": str(out / "eval"),
            "ckpt_dir": str(out / "models"),
            "paper_slice_size": [32, 32],
            **TINY_NET,
            **overrides,
        }
    )
    parser.parse()
    return parser


def test_raw_btcv_volumes_are_windowed_mapped_and_sliced(phantoms, tmp_path):
    parser = _train_parser(phantoms["btcv"], tmp_path, slices_per_volume=3)
    assert parser.get_parsed_content("recipe") == "paper"  # paper.json layered
    assert parser.get_parsed_content("network_preset") == "large"
    items = parser.get_parsed_content("train#datalist")
    assert all(i["image"].endswith(".nii.gz") for i in items) and len(items) == 3  # 5 cases, 2 held out
    raw = np.asarray(nib.load(items[0]["label"]).dataobj)
    assert raw.max() > 8, "the phantoms carry the 13 BTCV ids"
    loaded = LoadSynapsed(keys=["image", "label"])(items[0])
    np.testing.assert_array_equal(loaded["label"][0].numpy(), np.vectorize(lambda v: BTCV_TO_SYNAPSE8.get(v, 0))(raw))
    hu = np.asarray(nib.load(items[0]["image"]).dataobj).astype(np.float32)
    np.testing.assert_allclose(loaded["image"][0].numpy(), (np.clip(hu, -125, 275) + 125) / 400, atol=1e-6)
    samples = parser.get_parsed_content("train#dataset")[0]
    assert len(samples) == 3
    for s in samples:
        assert tuple(s["image"].shape) == (1, 32, 32) and tuple(s["label"].shape) == (1, 32, 32)
        assert set(torch.unique(s["label"]).tolist()) <= set(range(9))


def test_transunet_npz_training_and_h5_test_volume(phantoms, tmp_path):
    parser = _train_parser(phantoms["transunet"], tmp_path)
    train = parser.get_parsed_content("train#datalist")
    val = parser.get_parsed_content("validate#datalist")
    assert len(train) == SMALL[2] and all(i["image"].endswith(".npz") for i in train)
    assert {i["fold"] for i in train} == {0}, "slices of one case share a fold"
    assert len(val) == 1 and val[0]["image"].endswith(".npy.h5")
    assert parser.get_parsed_content("train#slices_per_item") == 1
    assert parser.get_parsed_content("train#dataloader").batch_size == 24  # TransUNet's batch of 24 slices
    samples = parser.get_parsed_content("train#dataset")[0]
    assert len(samples) == 1 and tuple(samples[0]["image"].shape) == (1, 32, 32)
    volume = parser.get_parsed_content("validate#dataset")[0]
    assert tuple(volume["image"].shape) == (1, 32, 32, SMALL[2]) and tuple(volume["label"].shape) == (1, *SMALL)
    np.testing.assert_allclose(volume["label"].affine.numpy(), np.eye(4))  # no geometry: voxels
    # slice k of the h5 volume == the npz slice k == TransUNet's preprocessing of the raw phantom's slice k
    load = LoadSynapsed(keys=["image", "label"])
    raw = load(make_synapse_sample(phantoms["tmp"] / "case5", num_cases=5, shape=SMALL)[4])
    h5 = load(dict(val[0]))
    for k in (0, 7):
        npz = load(dict(train[k]))
        assert Path(train[k]["image"]).name == f"case0005_slice{k:03d}.npz"
        np.testing.assert_allclose(npz["image"][0, ..., 0].numpy(), raw["image"][0, ..., k].numpy(), atol=1e-6)
        np.testing.assert_array_equal(npz["label"][0, ..., 0].numpy(), raw["label"][0, ..., k].numpy())
    assert h5["label"].shape == raw["label"].shape and float(h5["label"].max()) <= 8


def test_network_presets_and_slices_per_item():
    """The presets a config names (the network's DANIE-S/-B/-L and the bundle's tiny width) and the slices drawn."""
    assert NETWORK_PRESETS["large"]["depths"] == [3, 4, 6, 3]
    assert DANIE_PRESETS["large"]["depths"] == (3, 4, 6, 3), "the network's own presets"
    assert {"tiny", *DANIE_PRESETS} == set(NETWORK_PRESETS)
    for name, preset in DANIE_PRESETS.items():
        assert danie_preset(name) == {key: list(value) for key, value in preset.items()}, name
    tiny = danie_preset("tiny")
    tiny["depths"].append(9)  # a copy: the table is not changed by its users
    assert NETWORK_PRESETS["tiny"]["depths"] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="unknown DANIE preset 'huge'"):
        danie_preset("huge")
    # TransUNet's .npz files are single slices; volumes give slices_per_volume
    assert slices_per_item([{"image": "/d/train_npz/case0005_slice000.NPZ"}], 8) == 1
    assert slices_per_item([{"image": "/d/img/img0001.nii.gz"}], 8) == 8
    assert slices_per_item([{"image": "/d/test_vol_h5/case0001.npy.h5"}], 3) == 3
    with pytest.raises(ValueError, match="empty"):
        slices_per_item([], 8)
    with pytest.raises(ValueError, match="slices_per_volume"):
        slices_per_item([{"image": "a.nii.gz"}], 0)


# ---------------------------------------------------------------------------------------------------------------
# the 3D configuration


def test_3d_configuration_trains_and_infers(tmp_path):
    root = copy_bundle("danie", tmp_path)
    sample = {"num_cases": 3, "shape": [32, 32, 16]}  # one 32x32x16 window per volume
    net = {**TINY_NET, "network_def#patch_size": 2}  # size_divisible_by 16
    run_workflow(
        configs(root, "train.json", "train_3d.json"),
        root,
        "train",
        "training",
        bundle_root=str(root),
        embedded_sample=sample,
        quick_epochs=1,
        val_interval=1,
        quick_roi_size=[32, 32, 16],
        patches_per_volume=1,
        **net,
    )
    assert (root / "models" / "3d" / "model.pt").is_file() and not (root / "models" / "model.pt").exists()
    record = read_record(root / "models" / "3d" / "model.pt", "danie", root).record
    assert record.network["spatial_dims"] == 3 and record.network["patch_size"] == 2
    assert record.preprocessing == {"hu_window": [-125, 275], "roi_size": [32, 32, 16]}
    assert "val_mean_dice" in (root / "eval" / "3d" / "metrics.csv").read_text()
    # no network or window override: the record beside models/3d/model.pt brings them
    run_workflow(configs(root, "inference.json", "inference_3d.json"), root, "infer", "run", embedded_sample=sample)
    written = sorted((root / "eval" / "3d" / "predictions").glob("*_seg.nii.gz"))
    assert len(written) == 3
    source = nib.load(root / "data" / "generated" / "synapse" / "img" / "img0001.nii.gz")
    seg = nib.load(written[0])
    assert seg.shape == source.shape and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(seg.affine, source.affine, atol=1e-5)
    assert int(np.asarray(seg.dataobj).max()) <= 8


PAPER_CHANGES = {  # setting: (quick: train.json, paper: train.json + paper.json)
    "recipe": ("quick", "paper"),
    "slice_size": ([96, 96], [224, 224]),
    "network_preset": ("tiny", "large"),
    "batch_size": (8, 24),
    "rot_flip_prob": (0.0, 0.5),
    "slice_class_balance": (0.5, 0.0),
}


CONFIG_FILES = ["train.json", "paper.json", "inference.json", "evaluate.json"]
CONFIG_FILES_3D = ["train_3d.json", "paper_3d.json", "inference_3d.json"]


@pytest.mark.parametrize("name", CONFIG_FILES + CONFIG_FILES_3D)
def test_no_setting_depends_on_where_the_data_lies(name: str):
    """``use_embedded_data`` chooses (or generates) the data and nothing else; no side file records settings."""
    text = (CONFIGS / name).read_text()
    assert "train_settings" not in text, f"{name} still reads or writes the removed side file"
    users = {i for i, v in config_strings(json.loads(text)) if "@use_embedded_data" in v}
    assert all("datalist" in i for i in users), f"{name}: {sorted(users)} switch on the data folder"


@pytest.mark.parametrize("name", CONFIG_FILES + CONFIG_FILES_3D)
def test_configs_call_helpers_not_clever_expressions(name: str):
    """Side effects are not sequenced in lists (``[f(), g(), x][-1]``), datalists and the slices drawn per item are
    one helper call with plain arguments (no ``x if c else y``)."""
    for key, value in config_strings(json.loads((CONFIGS / name).read_text())):
        assert "][-1]" not in value, f"{name}: {key} sequences side effects in a list"
        assert "lambda " not in value or key.endswith("batch_transform"), f"{name}: {key} defines a lambda"
        if key.endswith(("datalist", "slices_per_item")) and value.startswith("$"):
            assert " if " not in value and value.count("attnseg_monai.") == 1, f"{name}: {key}: {value}"


def test_train_json_is_the_quick_recipe_and_paper_json_the_papers(tmp_path):
    def parsed(*files: str, **extra) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(configs(ROOT, *files))
        parser.update({"bundle_root": str(ROOT), "ckpt_dir": str(tmp_path / "models"), **extra})
        return parser

    # train.json is the quick recipe whatever the data: --dataset_dir alone changes no setting
    quick, paper = parsed("train.json"), parsed("train.json", "paper.json")
    elsewhere = parsed("train.json", dataset_dir=str(tmp_path / "my_data"))
    assert quick.get_parsed_content("use_embedded_data") and not elsewhere.get_parsed_content("use_embedded_data")
    for key, (q, p) in PAPER_CHANGES.items():
        assert (quick.get_parsed_content(key), paper.get_parsed_content(key)) == (q, p), key
        assert elsewhere.get_parsed_content(key) == q, f"{key} follows the data folder"
    # paper.json holds exactly what the paper recipe changes (the optimiser and the iteration budget besides the
    # settings above: tests/bundles/test_danie_experiments.py checks the budget)
    assert set(json.loads((CONFIGS / "paper.json").read_text())) == {
        *PAPER_CHANGES,
        "optimizer",
        "max_epochs",
        "val_interval",
    }
    assert (quick.get_parsed_content("max_epochs"), quick.get_parsed_content("val_interval")) == (200, 50)
    # the recipes' networks: the tiny widths and DANIE-L, both 2D, trained at the recipe's slice size
    for parser, preset, size in ((quick, "tiny", [96, 96]), (paper, "large", [224, 224])):
        config = parser["network_def"]
        assert config["embed_dims"] == "$@preset['embed_dims']" and config["img_size"] == "@slice_size"
        assert parser.get_parsed_content("preset") == NETWORK_PRESETS[preset]
        assert parser.get_parsed_content("network_def#spatial_dims") == 2
        assert parser.get_parsed_content("network_def#img_size") == size
    for parser in (quick, paper):
        parser.update({**TINY_NET, "network_def#img_size": [32, 32]})  # the optimiser needs a network, a tiny one
    assert type(quick.get_parsed_content("optimizer")).__name__ == "AdamW"
    paper_optimizer = paper.get_parsed_content("optimizer")
    assert type(paper_optimizer).__name__ == "SGD"
    assert paper_optimizer.defaults["lr"] == 0.01 and paper_optimizer.defaults["momentum"] == 0.9
    assert paper_optimizer.defaults["weight_decay"] == 1e-4
    # what inference must repeat goes into the record, with the recipe's name
    for parser, recipe, size in ((quick, "quick", [96, 96]), (paper, "paper", [224, 224])):
        spec = parser.get_parsed_content("record")
        assert spec.bundle == "danie" and spec.recipe == recipe
        assert spec.preprocessing == {"slice_size": size, "hu_window": [-125, 275]}
    # the 3D configuration: train_3d.json over either recipe, paper_3d.json for the paper's 3D widths and window
    quick_3d = parsed("train.json", "train_3d.json")
    three_d = parsed("train.json", "paper.json", "train_3d.json", "paper_3d.json")
    for parser, recipe, preset, roi, epochs, batch in (
        (quick_3d, "quick", "tiny", [96, 96, 32], 20, 2),
        (three_d, "paper", "small", [128, 128, 64], 300, 4),
    ):
        assert parser.get_parsed_content("recipe") == recipe
        assert parser.get_parsed_content("network_preset") == preset
        assert parser.get_parsed_content("roi_size") == roi
        assert parser.get_parsed_content("max_epochs") == epochs
        assert parser.get_parsed_content("batch_size") == batch
        assert parser.get_parsed_content("network_def#spatial_dims") == 3
        assert parser.get_parsed_content("network_def#img_size") == roi
        spec = parser.get_parsed_content("record")
        assert spec.recipe == recipe and spec.preprocessing == {"hu_window": [-125, 275], "roi_size": roi}
    assert three_d["optimizer"]["_target_"] == "torch.optim.SGD"
    # inference without a trained model: the quick recipe's network and settings (a record decides otherwise)
    infer = parsed("inference.json", ckpt_path=str(tmp_path / "models" / "model.pt"))
    assert infer.get_parsed_content("slice_size") == [96, 96]
    assert infer.get_parsed_content("hu_window") == [-125, 275]
    assert list(infer.get_parsed_content("network_def").embed_dims) == NETWORK_PRESETS["tiny"]["embed_dims"]


def test_a_tiny_paper_training_is_inferred_as_recorded(tmp_path):
    """train.json + paper.json with a width, a slice size and an HU window the configs do not build by default, one
    epoch; then inference.json and evaluate.json, given nothing but the bundle folder, build the recorded network and
    repeat the recorded slice size and window, and inference runs with every tensor loaded. The same weights
    elsewhere without their record do not fit the default network and are refused; with it they decide again."""
    root = copy_bundle("danie", tmp_path)
    sample = {"num_cases": 3, "shape": [32, 32, 16]}
    preprocessing = {"slice_size": [32, 32], "hu_window": [-150, 250]}
    run_workflow(
        configs(root, "train.json", "paper.json"),
        root,
        "train",
        "training",
        bundle_root=str(root),
        embedded_sample=sample,
        paper_iterations=1,
        val_interval=1,
        paper_slice_size=preprocessing["slice_size"],
        hu_window=preprocessing["hu_window"],
        slices_per_volume=2,
        batch_size=4,
        **TINY_NET,
    )
    widths = {key.split("#")[1]: value for key, value in TINY_NET.items()}
    for name in ("model.pt", "model_final.pt"):
        record = read_record(root / "models" / name, "danie", root).record
        assert record is not None and record.bundle == "danie" and record.recipe == "paper", name
        assert {key: list(record.network[key]) for key in widths} == widths
        assert record.network["spatial_dims"] == 2 and list(record.network["img_size"]) == [32, 32]
        assert record.preprocessing == preprocessing
        assert record.classes == {str(i): organ for i, organ in enumerate(SYNAPSE_CLASSES)}
    recorded = read_record(root / "models" / "model.pt").record

    def parsed(*files: str, **extra) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(configs(root, *files))
        parser.update({"bundle_root": str(root), **extra})
        return parser

    def check(parser: ConfigParser, loads: list[str]) -> None:
        assert network_config(parser.get_parsed_content("network_def")) == recorded.network
        assert parser.get_parsed_content("slice_size") == [32, 32]
        assert parser.get_parsed_content("hu_window") == [-150, 250]
        steps = {type(t).__name__: t for t in parser.get_parsed_content("preprocessing").transforms}
        assert list(steps["Resized"].resizer.spatial_size) == [32, 32, -1]
        for load in loads:
            assert parser.get_parsed_content(load).hu_window == (-150.0, 250.0), load

    # nothing but the bundle folder: no paper.json, no width, slice size or window repeated
    check(parsed("inference.json"), ["load"])
    check(parsed("inference.json", "evaluate.json"), ["load", "eval_load"])
    # and it runs from the bundle's own configs: the strict loader takes every tensor of model.pt
    run_workflow(configs(root, "inference.json"), root, "infer", "run", embedded_sample=sample)
    written = sorted((root / "eval" / "predictions").glob("*_seg.nii.gz"))
    assert len(written) == sample["num_cases"], written
    source = nib.load(root / "data" / "generated" / "synapse" / "img" / "img0001.nii.gz")
    seg = nib.load(written[0])
    assert seg.shape == source.shape and seg.get_data_dtype() == np.uint8
    # the weights elsewhere without their record: the quick recipe's defaults, which the weights do not fit
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(root / "models" / "model.pt", elsewhere / "model.pt")
    bare = parsed("inference.json", ckpt_path=str(elsewhere / "model.pt"))
    assert bare.get_parsed_content("slice_size") == [96, 96] and bare.get_parsed_content("hu_window") == [-125, 275]
    with pytest.raises(RuntimeError) as info:
        bare.get_parsed_content("network_def")
    causes, error = [], info.value
    while error is not None:
        causes.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("do not fit" in c and str(elsewhere / "model.pt") in c for c in causes), causes
    # with its record beside it, the checkpoint elsewhere decides again (its own folder, not the bundle's models/)
    shutil.copy(record_path(root / "models" / "model.pt"), record_path(elsewhere / "model.pt"))
    shutil.rmtree(root / "models")
    check(parsed("inference.json", ckpt_path=str(elsewhere / "model.pt")), ["load"])
