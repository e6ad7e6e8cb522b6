"""Pancreas datalists (attnseg_monai.data.pancreas): the split the attention_unet configs train and evaluate on, which
pairs are checked, and the volumes to segment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from attnseg_monai.data import (
    DatasetError,
    make_datalist,
    make_pancreas_sample,
    pancreas_inference_items,
    prepare_pancreas_datalist,
    select_fold,
)

SAMPLE = {"num_cases": 6, "num_test": 2, "shape": [32, 32, 16]}


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pancreas") / "Task07_Pancreas"
    make_pancreas_sample(root, **SAMPLE)
    return root


def test_splits_are_the_seeded_datalist_of_the_msd_layout(task, tmp_path):
    datalist_file = tmp_path / "eval" / "datalist.json"
    train = prepare_pancreas_datalist(task, datalist_file, embedded=False, split="training", **SAMPLE)
    val = prepare_pancreas_datalist(task, datalist_file, embedded=False, split="validation", validate="none")
    written = json.loads(datalist_file.read_text())
    # the same split as make_datalist over the layout's training section (20 % held out, 5 folds, seed 0)
    expected = make_datalist(make_pancreas_sample(task, **SAMPLE), val_fraction=0.2, num_folds=5, seed=0)
    assert [Path(i["image"]).name for i in train] == [Path(i["image"]).name for i in expected["training"]]
    assert [Path(i["image"]).name for i in val] == [Path(i["image"]).name for i in expected["validation"]]
    assert len(train) == 5 and len(val) == 1 and set(written) == {"training", "validation"}
    every = prepare_pancreas_datalist(task, datalist_file, embedded=False, split="all")
    assert len(every) == 6
    # a fold: the training cases of fold 1 validate, the others train (the held-out cases are left for a test)
    _, fold_val = select_fold(written, 1)
    got = prepare_pancreas_datalist(task, datalist_file, embedded=False, split="validation", fold=1, validate="none")
    assert [Path(i["image"]).name for i in got] == [Path(i["image"]).name for i in fold_val] and len(got) == 1
    with pytest.raises(ValueError, match="split"):
        prepare_pancreas_datalist(task, datalist_file, embedded=False, split="test")
    with pytest.raises(ValueError, match="validate"):
        prepare_pancreas_datalist(task, datalist_file, embedded=False, validate="some")


def test_embedded_sample_is_made_and_its_settings_ignored_for_a_users_data(tmp_path):
    made = prepare_pancreas_datalist(tmp_path / "generated", tmp_path / "a.json", embedded=True, split="all", **SAMPLE)
    assert len(made) == SAMPLE["num_cases"] and nib.load(made[0]["image"]).shape == tuple(SAMPLE["shape"])
    # a config passes its embedded_sample always: for a user's data set it changes nothing
    user = prepare_pancreas_datalist(
        tmp_path / "generated", tmp_path / "b.json", embedded=False, split="all", num_cases=99, shape=[1, 1, 1]
    )
    assert sorted(i["image"] for i in user) == sorted(i["image"] for i in made)


def _break_label(task: Path, item: dict, tmp_path: Path) -> Path:
    """A copy of the data set whose label of ``item`` holds a value outside 0..2."""
    copy = tmp_path / "Task07_Pancreas"
    shutil.copytree(task, copy)
    label = copy / Path(item["label"]).relative_to(task)
    image = nib.load(label)
    data = np.asarray(image.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, image.affine, image.header), label)
    return copy


def test_training_checks_every_pair_and_evaluation_the_pairs_it_scores(task, tmp_path):
    """train.json checks the whole data set; evaluate.json only the validation cases it scores."""
    train, val = (
        prepare_pancreas_datalist(task, tmp_path / "d.json", embedded=False, split=s, validate="none")
        for s in ("training", "validation")
    )
    broken = _break_label(task, train[0], tmp_path)  # a training case only
    refused = tmp_path / "refused.json"
    with pytest.raises(DatasetError, match="7"):
        prepare_pancreas_datalist(broken, refused, embedded=False, split="training")
    assert not refused.exists(), "nothing is written before the pairs are checked"
    scored = prepare_pancreas_datalist(broken, refused, embedded=False, split="validation", validate="split")
    assert [Path(i["image"]).name for i in scored] == [Path(i["image"]).name for i in val]
    assert refused.is_file()
    with pytest.raises(DatasetError):
        prepare_pancreas_datalist(broken, tmp_path / "d3.json", embedded=False, split="training", validate="split")
    # the label values are the config's
    assert prepare_pancreas_datalist(broken, tmp_path / "d4.json", embedded=False, label_values=range(8))


def test_inference_items_of_the_layout_and_of_any_folder(task, tmp_path):
    tests = pancreas_inference_items(task, embedded=False)
    assert [Path(i["image"]).name for i in tests] == ["pancreas_101.nii.gz", "pancreas_102.nii.gz"]
    made = pancreas_inference_items(tmp_path / "generated", embedded=True, **SAMPLE)
    assert [Path(i["image"]).name for i in made] == [Path(i["image"]).name for i in tests]
    # a folder without dataset.json: its volumes, never the excluded output folder
    scans = tmp_path / "scans"
    (scans / "out").mkdir(parents=True)
    shutil.copy(tests[0]["image"], scans / "a.nii.gz")
    shutil.copy(tests[1]["image"], scans / "out" / "b.nii.gz")
    found = pancreas_inference_items(scans, embedded=False, exclude=[scans / "out"])
    assert [Path(i["image"]).name for i in found] == ["a.nii.gz"]
    single = pancreas_inference_items(scans / "a.nii.gz", embedded=False)
    assert single == [{"image": str(scans.resolve() / "a.nii.gz")}]
    # a DICOM series sub-folder is one case; other files and plain sub-folders are left out
    (scans / "series").mkdir()
    (scans / "series" / "IM0001.dcm").write_bytes(b"")
    (scans / "notes.txt").write_text("not a volume")
    found = pancreas_inference_items(scans, embedded=False, exclude=[scans / "out"])
    assert [Path(i["image"]).name for i in found] == ["a.nii.gz", "series"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        pancreas_inference_items(tmp_path / "absent", embedded=False)
    with pytest.raises(FileNotFoundError, match="holds no volume"):
        pancreas_inference_items(scans, embedded=False, exclude=[scans / "a.nii.gz", scans / "series"])
    with pytest.raises(FileNotFoundError, match="not a volume"):
        pancreas_inference_items(scans / "notes.txt", embedded=False)
