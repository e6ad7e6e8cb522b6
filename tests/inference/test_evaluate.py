"""``attnseg evaluate``: pairing, per-case values checked by hand, the bundle's task, spacing from the files."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from attnseg_monai.inference import evaluate_folders
from attnseg_monai.inference.eval_task import task_from_bundle


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_binary_pairs_scored_by_hand_and_unpaired_files_fail(tmp_path):
    label = np.zeros((30, 40), np.uint8)
    label[5:15, 5:15] = 255  # 100 pixels, stored 0/255
    pred = np.zeros((30, 40), np.uint8)
    pred[5:15, 10:20] = 1  # shifted 5 columns: overlap 50
    _png(tmp_path / "labels" / "case1_mask.png", label)
    _png(tmp_path / "pred" / "case1_seg.png", pred)
    _png(tmp_path / "pred" / "case1_overlay.png", np.zeros((30, 40, 3), np.uint8))
    _png(tmp_path / "pred" / "case2_seg.png", pred)  # no label
    _png(tmp_path / "labels" / "case3_mask.png", label)  # no prediction
    result = evaluate_folders(tmp_path / "pred", tmp_path / "labels", num_classes=2, pred_postfix="seg")
    rows = {r["case"]: r for r in result.rows}
    assert rows["case1"]["status"] == "ok"
    assert rows["case1"]["dice_1"] == pytest.approx(2 * 50 / 200)
    assert rows["case1"]["iou_1"] == pytest.approx(50 / 150)
    assert rows["case1"]["hd95_1"] == pytest.approx(5.0)  # the vertical edges are 5 pixels apart
    assert {f["case"] for f in result.failures} == {"case2", "case3"}
    assert not result.ok
    with open(result.per_case_csv) as handle:
        table = list(csv.DictReader(handle))
    assert {r["case"] for r in table} == {"case1", "case2", "case3"}
    assert float(table[0]["dice_mean"]) == pytest.approx(0.5)
    summary = json.loads(result.summary_json.read_text())
    assert summary["metrics"]["dice_1"]["mean"] == pytest.approx(0.5) and summary["metrics"]["dice_1"]["count"] == 1
    assert summary["failed"] == 2


def test_hannet_task_scores_instances_with_aji_and_pq(tmp_path):
    task = task_from_bundle("hannet")
    assert task.mode == "instances" and task.pred_postfix == "instances"
    assert set(task.metrics) >= {"dice", "iou", "hd95", "asd"} and set(task.extra) == {"aji", "pq"}
    gt = np.zeros((32, 32), np.uint16)
    gt[2:10, 2:10], gt[15:25, 15:25] = 1, 2
    pred = np.zeros((32, 32), np.uint16)
    pred[2:10, 2:10], pred[15:25, 15:20] = 7, 9  # nucleus 2 half found
    _png(tmp_path / "labels" / "t1.png", gt)
    _png(tmp_path / "pred" / "t1_instances.png", pred)
    _png(tmp_path / "pred" / "t1_classes.png", (pred > 0).astype(np.uint8))
    result = evaluate_folders(tmp_path / "pred", tmp_path / "labels", bundle="hannet")
    (row,) = result.rows
    # AJI: C = 64 + 50, U = 64 + 100; PQ: one match (IoU 1) of 2 gt / 2 pred -> 1 / (1 + 0.5 + 0.5)
    assert row["aji"] == pytest.approx(114 / 164)
    assert row["pq"] == pytest.approx(1 / 2)
    assert row["dice_foreground"] == pytest.approx(2 * 114 / (164 + 114))


def test_volumes_use_the_file_spacing(tmp_path):
    aff = np.diag([2.0, 1.0, 1.0, 1.0])
    gt = np.zeros((12, 12, 12), np.uint8)
    gt[3:8, 3:8, 3:8] = 1
    pred = np.roll(gt, 1, axis=0)
    for folder, arr in (("labels", gt), ("pred", pred)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(arr, aff), tmp_path / folder / f"v{'_seg' if folder == 'pred' else ''}.nii.gz")
    result = evaluate_folders(
        tmp_path / "pred", tmp_path / "labels", num_classes=2, metrics="dice,hd", pred_postfix="seg"
    )
    (row,) = result.rows
    assert row["hd_1"] == pytest.approx(2.0)  # one voxel along x is 2 mm
    assert row["dice_1"] == pytest.approx(2 * 100 / 250)


def test_bad_arguments(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="num_classes"):
        evaluate_folders(tmp_path / "a", tmp_path / "a")
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_folders(tmp_path / "a", tmp_path / "a", num_classes=2, metrics="dice,fancy")
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", tmp_path / "a", num_classes=2)


def test_regions_of_nested_classes_are_scored_instead_of_the_classes(tmp_path):
    # the 2D Drishti-GS labels: 1 disc outside the cup, 2 cup; the disc region is {1, 2}
    label = np.zeros((30, 40), np.uint8)
    label[5:25, 5:25] = 1  # disc: 400 pixels
    label[10:20, 10:20] = 2  # cup: 100 of them
    pred = label.copy()
    pred[10:20, 10:15] = 1  # half the cup called rim: the disc region is exact
    _png(tmp_path / "labels" / "eye.png", label)
    _png(tmp_path / "pred" / "eye_seg.png", pred)
    regions = {"disc": [1, 2], "cup": [2]}
    result = evaluate_folders(
        tmp_path / "pred", tmp_path / "labels", bundle="attention_unet", regions=regions, output_dir=tmp_path / "out"
    )
    row = result.rows[0]
    assert row["dice_disc"] == pytest.approx(1.0) and row["dice_cup"] == pytest.approx(2 * 50 / 150)
    assert row["dice_mean"] == pytest.approx((1.0 + 2 / 3) / 2) and row["hd95_disc"] == pytest.approx(0.0)
    assert not any(k.endswith(("pancreas", "cancer")) for k in row)  # no per-class columns under other names
    assert result.summary["task"]["regions"] == {"disc": (1, 2), "cup": (2,)}
    for bad in ({"disc": []}, {"disc": [0, 1]}, {"disc": [3]}, {"disc": "12"}):
        with pytest.raises(ValueError, match="region 'disc'"):
            evaluate_folders(tmp_path / "pred", tmp_path / "labels", bundle="attention_unet", regions=bad)


def test_raw_btcv_labels_are_mapped_for_danie_on_request_and_refused_with_the_remedy(tmp_path):
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    btcv = np.zeros((12, 10, 6), np.uint8)  # depth 6: a last axis of 3 or 4 would read as colour channels
    btcv[1:5, 1:5, 1:3] = 6  # BTCV liver -> Synapse liver (5)
    btcv[6:9, 6:9, :2] = 11  # BTCV pancreas -> Synapse pancreas (6)
    btcv[9:11, 0:2, :] = 9  # BTCV portal vein: not one of the 8 organs -> background
    pred = np.zeros_like(btcv)
    pred[1:5, 1:5, 1:3] = 5
    pred[6:9, 6:9, :1] = 6  # half the pancreas
    (tmp_path / "labels").mkdir()
    (tmp_path / "pred").mkdir()
    # BTCV's own names: the prediction of img/img0001.nii.gz pairs with label/label0001.nii.gz
    nib.save(nib.Nifti1Image(btcv, affine), tmp_path / "labels" / "label0001.nii.gz")
    nib.save(nib.Nifti1Image(pred, affine), tmp_path / "pred" / "img0001_seg.nii.gz")
    refused = evaluate_folders(tmp_path / "pred", tmp_path / "labels", bundle="danie", output_dir=tmp_path / "a")
    assert "raw BTCV organ ids? pass --label_mapping btcv" in refused.failures[0]["error"]
    mapped = evaluate_folders(
        tmp_path / "pred", tmp_path / "labels", bundle="danie", label_mapping="btcv", output_dir=tmp_path / "b"
    )
    (row,) = mapped.rows
    assert row["status"] == "ok", row
    assert row["case"] == "img0001" and row["label"].endswith("label0001.nii.gz")
    assert row["dice_liver"] == pytest.approx(1.0)
    assert row["dice_pancreas"] == pytest.approx(2 * 9 / (9 + 18))
    with pytest.raises(ValueError, match="label_mapping must be one of"):
        evaluate_folders(tmp_path / "pred", tmp_path / "labels", bundle="danie", label_mapping="msd")
