"""Synapse per-organ scores and tables (attnseg_monai.metrics.synapse): empty-organ policies, summary, CSV, markdown."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from attnseg_monai.metrics import (
    EMPTY_POLICIES,
    SYNAPSE_METRICS,
    synapse_case_scores,
    synapse_csv_tables,
    synapse_summary,
    synapse_table_markdown,
)

SHAPE = (8, 8, 4)
DIAGONAL = math.sqrt(7**2 + 7**2 + 3**2)  # the image diagonal in voxels: a missed organ's distance


def _case() -> tuple[np.ndarray, np.ndarray]:
    """aorta (1) found exactly, gallbladder (2) missed, the other six organs in neither."""
    label = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    label[1:4, 1:4, 1:3] = pred[1:4, 1:4, 1:3] = 1
    label[5:7, 5:7, 1:3] = 2
    return pred, label


def test_case_scores_under_both_empty_organ_policies():
    pred, label = _case()
    scores = synapse_case_scores(pred, label)
    assert scores["organs"][:2] == ["aorta", "gallbladder"] and len(scores["organs"]) == 8
    assert scores["status"][:2] == ["evaluated", "pred_empty"] and set(scores["status"][2:]) == {"both_empty"}
    assert scores["dice"][:2] == [1.0, 0.0] and all(math.isnan(v) for v in scores["dice"][2:])
    assert scores["hd95"][0] == 0.0 and scores["hd95"][1] == pytest.approx(DIAGONAL)
    assert scores["mean"]["dice"] == pytest.approx(0.5), "organs in neither are left out of the mean"
    # TransUNet's calculate_metric_percase: a missed organ and organs in neither score 0 (HD95 0 too), nothing left out
    tu = synapse_case_scores(pred, label, metrics=("dice", "hd95"), empty_policy="transunet")
    assert tu["dice"] == [1.0] + [0.0] * 7 and tu["hd95"] == [0.0] * 8
    assert tu["mean"] == {"dice": pytest.approx(1 / 8), "hd95": 0.0} and "iou" not in tu
    assert EMPTY_POLICIES == ("exclude", "transunet")
    with pytest.raises(ValueError, match="empty_policy"):
        synapse_case_scores(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), empty_policy="ignore")
    with pytest.raises(ValueError, match="metrics"):
        synapse_case_scores(pred, label, metrics=("dice", "hd100"))


def _row(case: str, dice: list[float], status: list[str], units: str = "mm") -> dict:
    organs = ["aorta", "liver"]
    row = {"case": case, "source": f"/d/{case}.nii.gz", "distance_units": units, "_organs": organs}
    for organ, value, s in zip(organs, dice, status):
        row[f"dice_{organ}"], row[f"status_{organ}"] = value, s
    row["dice_mean"] = float(np.nanmean(dice)) if not all(math.isnan(v) for v in dice) else math.nan
    return row


def test_summary_csv_and_markdown_of_two_cases():
    rows = [
        _row("img0001", [1.0, 0.5], ["evaluated", "evaluated"]),
        _row("img0002", [0.5, math.nan], ["evaluated", "both_empty"]),
    ]
    summary = synapse_summary(rows, metrics=("dice",), empty_policy="exclude", hd_mode="pooled")
    assert summary["cases"] == 2 and summary["organs"] == ["aorta", "liver"] and summary["distance_units"] == "mm"
    aorta, liver = summary["per_organ"]["aorta"], summary["per_organ"]["liver"]
    assert aorta["dice"] == {"mean": 0.75, "std": 0.25, "n": 2}
    assert liver["dice"] == {"mean": 0.5, "std": 0.0, "n": 1}, "NaN (organ in neither) is left out"
    assert liver["status_counts"] == {"evaluated": 1, "both_empty": 1, "pred_empty": 0, "gt_empty": 0}
    assert summary["mean"] == {"dice": pytest.approx(0.625)}, "the mean over organs of the organ means"
    mixed = synapse_summary([rows[0], _row("x", [1.0, 1.0], ["evaluated"] * 2, "voxels")], metrics=("dice",))
    assert mixed["distance_units"] == "mixed"
    tables = synapse_csv_tables(rows, summary)
    assert set(tables) == {"per_case.csv", "summary.csv"} and tables["per_case.csv"].endswith("\r\n")
    per_case = list(csv.DictReader(io.StringIO(tables["per_case.csv"])))
    assert [r["case"] for r in per_case] == ["img0001", "img0002"]
    assert per_case[1]["dice_liver"] == "nan" and per_case[0]["dice_aorta"] == "1.000000"
    assert list(per_case[0]) == [
        "case",
        "dice_aorta",
        "dice_liver",
        "dice_mean",
        "status_aorta",
        "status_liver",
        "distance_units",
        "source",
    ]
    organ_rows = list(csv.DictReader(io.StringIO(tables["summary.csv"])))
    assert [r["organ"] for r in organ_rows] == ["aorta", "liver", "mean"]
    assert organ_rows[0]["dice_std"] == "0.250000" and organ_rows[1]["both_empty"] == "1"
    assert organ_rows[2]["dice_mean"] == "0.625000" and organ_rows[2]["evaluated"] == ""
    markdown = synapse_table_markdown(summary, "Mine")
    assert markdown.splitlines()[0] == "| Method | DSC (%) | HD95 (mm) | aorta | liver |"
    assert "| Mine | 62.50 | nan | 75.00 | 50.00 |" in markdown and "HD95 per organ" not in markdown
    assert set(SYNAPSE_METRICS) == {"dice", "hd95", "iou", "asd"}
