"""Synapse datalists (attnseg_monai.data.synapse): TransUNet's case split of raw BTCV, the 3D configuration's volumes,
the volumes to segment, and the names of the predictions."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from attnseg_monai.data import (
    SYNAPSE_CLASSES,
    SYNAPSE_ORGANS,
    TRANSUNET_TEST_CASES,
    TRANSUNET_TRAIN_CASES,
    is_transunet_file,
    make_synapse_sample,
    make_synapse_transunet_sample,
    prepare_synapse_datalist,
    require_volumes,
    synapse_inference_items,
    synapse_output_name,
)

SMALL = (32, 32, 16)


def test_btcv_split_follows_transunet_when_its_cases_are_present(tmp_path):
    ids = sorted(TRANSUNET_TRAIN_CASES + TRANSUNET_TEST_CASES) + [11]
    for folder in ("img", "label"):
        (tmp_path / "btcv" / folder).mkdir(parents=True)
    for n in ids:
        lab = np.zeros((6, 6, 3), np.uint8)
        lab[2:4, 2:4, 1] = 6
        nib.save(
            nib.Nifti1Image(np.zeros((6, 6, 3), np.int16), np.eye(4)), tmp_path / "btcv" / "img" / f"img{n:04d}.nii.gz"
        )
        nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "btcv" / "label" / f"label{n:04d}.nii.gz")
    kwargs = {"embedded": False, "datalist_file": tmp_path / "dl.json"}
    val = prepare_synapse_datalist(tmp_path / "btcv", split="validation", **kwargs)
    train = prepare_synapse_datalist(tmp_path / "btcv", split="training", **kwargs)
    case = lambda i: int(Path(i["image"]).name[3:7])  # noqa: E731
    assert [case(i) for i in val] == sorted(TRANSUNET_TEST_CASES)
    assert [case(i) for i in train] == sorted(TRANSUNET_TRAIN_CASES), "case 11 is in neither TransUNet list"
    (tmp_path / "btcv" / "img" / "img0001.nii.gz").unlink()
    (tmp_path / "btcv" / "label" / "label0001.nii.gz").unlink()
    assert len(prepare_synapse_datalist(tmp_path / "btcv", split="all", **kwargs)) == len(ids) - 1  # random split
    with pytest.raises(ValueError, match="missing: \\[1\\]"):
        prepare_synapse_datalist(tmp_path / "btcv", split_mode="transunet", **kwargs)


@pytest.fixture(scope="module")
def transunet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("transunet")
    make_synapse_transunet_sample(root, num_train_cases=1, num_test_cases=1, shape=SMALL)
    return root


def test_the_3d_configuration_takes_volumes_only(tmp_path, transunet):
    """``volumes_only`` (train_3d.json) refuses TransUNet's .npz slices and passes volumes through."""
    btcv = make_synapse_sample(tmp_path / "btcv", num_cases=3, shape=SMALL)
    kwargs = {"embedded": False, "datalist_file": tmp_path / "dl.json"}
    items = prepare_synapse_datalist(tmp_path / "btcv", volumes_only=True, **kwargs)
    assert items == prepare_synapse_datalist(tmp_path / "btcv", **kwargs) and len(items) == 2
    assert require_volumes(btcv) == [dict(i) for i in btcv]
    with pytest.raises(ValueError, match="TransUNet .npz slices"):
        prepare_synapse_datalist(transunet, volumes_only=True, **kwargs)
    # the validation volumes of TransUNet's layout are volumes
    val = prepare_synapse_datalist(transunet, split="validation", volumes_only=True, **kwargs)
    assert len(val) == 1 and val[0]["image"].endswith(".npy.h5")


def test_sample_settings_apply_to_the_embedded_data_only(tmp_path):
    """A config passes its ``embedded_sample`` always; it makes the sample and is ignored for a user's data."""
    sample = {"num_cases": 3, "shape": list(SMALL)}
    embedded = prepare_synapse_datalist(
        tmp_path / "generated", tmp_path / "a.json", embedded=True, split="all", **sample
    )
    assert len(embedded) == 3 and nib.load(embedded[0]["image"]).shape == SMALL
    user = prepare_synapse_datalist(
        tmp_path / "generated", tmp_path / "b.json", embedded=False, split="all", num_cases=99, shape=[1, 1, 1]
    )
    assert sorted(i["image"] for i in user) == sorted(i["image"] for i in embedded)
    written = json.loads((tmp_path / "b.json").read_text())
    assert set(written) == {"training", "validation"} and all("fold" in i for i in written["training"])
    images = synapse_inference_items(tmp_path / "generated", embedded=False, num_cases=99)
    assert len(images) == 3 and all(set(i) == {"image"} for i in images)


def test_inference_items_of_files_folders_and_layouts(tmp_path, transunet):
    make_synapse_sample(tmp_path / "btcv", num_cases=2, shape=SMALL)
    one = tmp_path / "btcv" / "img" / "img0001.nii.gz"
    assert synapse_inference_items(one, embedded=False) == [{"image": str(one.resolve())}]
    # TransUNet's layout: its test volumes; raw BTCV without Testing/: its training images
    [h5] = synapse_inference_items(transunet, embedded=False)
    assert h5["image"].endswith(".npy.h5")
    assert len(synapse_inference_items(tmp_path / "btcv", embedded=False)) == 2
    # any other folder: its volumes and its DICOM series sub-folders, sorted
    mixed = tmp_path / "mixed"
    (mixed / "series").mkdir(parents=True)
    (mixed / "series" / "IM0001.dcm").write_bytes(b"")
    (mixed / "notes.txt").write_text("not a volume")
    (mixed / "b.nii.gz").write_bytes(one.read_bytes())
    found = [Path(i["image"]).name for i in synapse_inference_items(mixed, embedded=False)]
    assert found == ["b.nii.gz", "series"]
    assert synapse_inference_items(mixed / "series", embedded=False) == [{"image": str((mixed / "series").resolve())}]
    with pytest.raises(FileNotFoundError, match="not a volume"):
        synapse_inference_items(mixed / "notes.txt", embedded=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        synapse_inference_items(tmp_path / "absent", embedded=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no volume"):
        synapse_inference_items(tmp_path / "empty", embedded=False)


def test_output_names_and_file_kinds():
    assert synapse_output_name({"filename_or_obj": "/d/test_vol_h5/case0001.npy.h5"}, None) == {
        "subject": "/d/test_vol_h5/case0001.h5",
        "idx": None,
    }
    assert synapse_output_name({"filename_or_obj": "/d/img0001.nii.gz", "patch_index": 2}, None)["idx"] == 2
    assert synapse_output_name(None, type("Saver", (), {"_data_index": 7})())["subject"] == "7"
    assert is_transunet_file("case0005_slice000.npz") and is_transunet_file("CASE0001.NPY.H5")
    assert not is_transunet_file("img0001.nii.gz")
    assert SYNAPSE_ORGANS == tuple(SYNAPSE_CLASSES[1:]) and len(SYNAPSE_ORGANS) == 8
