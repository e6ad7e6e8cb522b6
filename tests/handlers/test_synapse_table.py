"""SynapseTableHandler (attnseg_monai.handlers): scores an evaluator's outputs per organ and writes the tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from attnseg_monai.handlers import SynapseTableHandler


def _item(name: str, shift: int, fmt: str | None = None) -> dict:
    """aorta a 4x4x2 box, predicted ``shift`` slices higher; spacing 2 mm along the slices (affine); ``fmt``: the
    label file's kind (TransUNet's ``hdf5`` carries no spacing)."""
    label = torch.zeros(1, 8, 8, 6)
    pred = torch.zeros_like(label)
    label[0, 2:6, 2:6, 1:3] = 1
    pred[0, 2:6, 2:6, 1 + shift : 3 + shift] = 1
    affine = torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0], dtype=torch.float64))
    onehot = torch.nn.functional.one_hot(label[0].long(), 9).movedim(-1, 0).float()
    return {
        "pred": MetaTensor(pred, affine=affine, meta={"filename_or_obj": f"/data/{name}"}),
        "label": MetaTensor(onehot, affine=affine, meta={"format": fmt} if fmt else {}),
    }


def test_tables_of_an_evaluation_are_written_atomically(tmp_path):
    handler = SynapseTableHandler(tmp_path / "tables", metrics=("dice", "hd95"), title="Test")
    engine = Engine(lambda eng, batch: batch)
    handler.attach(engine)
    engine.run([[_item("img0001.nii.gz", 0)], [_item("img0002.nii.gz", 1)]], max_epochs=1)
    out = tmp_path / "tables"
    assert sorted(p.name for p in out.iterdir()) == ["per_case.csv", "summary.csv", "summary.json", "synapse_table.md"]
    summary = json.loads((out / "summary.json").read_text())
    aorta = summary["per_organ"]["aorta"]
    # one-hot labels are turned back into class indices; case 2 overlaps half: Dice 0.5, HD95 one slice = 2 mm
    assert aorta["dice"]["mean"] == pytest.approx(0.75) and aorta["hd95"]["mean"] == pytest.approx(1.0)
    assert summary["distance_units"] == "mm" and summary["cases"] == 2 and summary["metrics"] == ["dice", "hd95"]
    assert math.isnan(summary["per_organ"]["liver"]["dice"]["mean"])
    assert summary["per_organ"]["liver"]["status_counts"]["both_empty"] == 2
    rows = (out / "per_case.csv").read_text().splitlines()
    assert rows[1].startswith("img0001,1.000000,") and rows[2].startswith("img0002,0.500000,")
    assert "| Test | 75.00 | 1.00 |" in (out / "synapse_table.md").read_text()
    # a new run starts from no rows; TransUNet's files carry no spacing: distances in voxels
    engine.run([[_item("case0001.npy.h5", 1, fmt="hdf5")]], max_epochs=1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == 1 and summary["distance_units"] == "voxels"
    assert (out / "per_case.csv").read_text().splitlines()[1].startswith("case0001,")


def test_bad_settings_are_refused_and_an_empty_run_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="empty_policy"):
        SynapseTableHandler(tmp_path, empty_policy="ignore")
    with pytest.raises(ValueError, match="metrics"):
        SynapseTableHandler(tmp_path, metrics=("dice", "hd100"))
    with pytest.raises(ValueError, match="hd_mode"):
        SynapseTableHandler(tmp_path, hd_mode="max")
    handler = SynapseTableHandler(tmp_path / "none")
    handler.completed()
    assert not (tmp_path / "none").exists()
    row = handler.score(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4)))
    assert row["case"] == "case0" and row["status_aorta"] == "both_empty"
