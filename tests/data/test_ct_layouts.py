"""CT data set readers on tiny files written in each real layout: MSD task folders, raw BTCV, TransUNet npz/h5."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage, LoadImaged

from attnseg_monai.data import (
    BTCVReader,
    DatasetError,
    MSDReader,
    TransUNetSynapseReader,
    find_reader,
    read_dataset,
    volume_case_key,
)
from attnseg_monai.io.transunet import TransUNetH5Reader, TransUNetNpzReader

_AFFINE = np.diag([-0.7, -0.7, 2.5, 1.0])


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray = _AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def volume(seed: int = 0, shape: tuple[int, int, int] = (8, 6, 4), labels: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if labels:
        return rng.integers(0, 3, size=shape).astype(np.uint8)
    return rng.integers(-1000, 1000, size=shape).astype(np.int16)


@pytest.fixture
def msd_root(tmp_path: Path) -> Path:
    """A Task07-style folder: dataset.json with './' paths, AppleDouble junk as in the MSD tarballs, a test image."""
    root = tmp_path / "Task07_Pancreas"
    training = []
    for n in (1, 4):
        name = f"pancreas_{n:03d}.nii.gz"
        write_nifti(root / "imagesTr" / name, volume(n))
        write_nifti(root / "labelsTr" / name, volume(n, labels=True))
        (root / "imagesTr" / f"._{name}").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    write_nifti(root / "imagesTs" / "pancreas_002.nii.gz", volume(2))
    dataset = {
        "name": "Pancreas",
        "description": "Pancreas and cancer segmentation",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
        "numTraining": 2,
        "numTest": 1,
        "training": training[::-1],
        "test": ["./imagesTs/pancreas_002.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(dataset, indent=4))
    return root


def test_msd_task_with_dataset_json(msd_root: Path):
    assert find_reader(msd_root).name == "msd"
    items = read_dataset(msd_root)
    assert items == [
        {"image": str(msd_root / "imagesTr" / name), "label": str(msd_root / "labelsTr" / name)}
        for name in ("pancreas_001.nii.gz", "pancreas_004.nii.gz")
    ]
    assert read_dataset(msd_root, layout="msd", section="test") == [
        {"image": str(msd_root / "imagesTs/pancreas_002.nii.gz")}
    ]
    with pytest.raises(ValueError, match="no 'validation' list; lists found: test, training"):
        MSDReader(section="validation").read(msd_root)


def test_msd_missing_files_are_listed_or_skipped(msd_root: Path):
    data = json.loads((msd_root / "dataset.json").read_text())
    data["training"].append({"image": "./imagesTr/pancreas_009.nii.gz", "label": "./labelsTr/pancreas_009.nii.gz"})
    data["training"].append({"image": "./imagesTr/pancreas_001.nii.gz"})
    (msd_root / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError) as info:
        read_dataset(msd_root, layout="msd")
    paths = {p for p, _ in info.value.problems}
    assert {str(msd_root / "imagesTr/pancreas_009.nii.gz"), str(msd_root / "labelsTr/pancreas_009.nii.gz")} <= paths
    assert any("training[3] has no 'label' entry" in m for _, m in info.value.problems)
    assert "on_missing='skip'" in str(info.value)
    assert len(read_dataset(msd_root, layout="msd", on_missing="skip")) == 2
    (msd_root / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_dataset(msd_root, layout="msd")


def test_msd_folders_without_file_lists_pair_by_case(tmp_path: Path):
    """nnU-Net raw data: a dataset.json without file lists, images with the _0000 channel suffix."""
    root = tmp_path / "Dataset007_Pancreas"
    for n in (3, 1):
        write_nifti(root / "imagesTr" / f"pancreas_{n:03d}_0000.nii.gz", volume(n))
        write_nifti(root / "labelsTr" / f"pancreas_{n:03d}.nii.gz", volume(n, labels=True))
    write_nifti(root / "imagesTs" / "pancreas_002_0000.nii.gz", volume(2))
    nnunet = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "pancreas": 1}, "numTraining": 2}
    (root / "dataset.json").write_text(json.dumps(nnunet))
    items = read_dataset(root)
    assert [(Path(i["image"]).name, Path(i["label"]).name) for i in items] == [
        ("pancreas_001_0000.nii.gz", "pancreas_001.nii.gz"),
        ("pancreas_003_0000.nii.gz", "pancreas_003.nii.gz"),
    ]
    assert [Path(i["image"]).name for i in read_dataset(root, layout="msd", section="test")] == [
        "pancreas_002_0000.nii.gz"
    ]
    write_nifti(root / "labelsTr" / "pancreas_005.nii.gz", volume(5, labels=True))
    with pytest.raises(DatasetError, match="pancreas_005.nii.gz: no image file found for this label"):
        read_dataset(root)


@pytest.fixture
def btcv_root(tmp_path: Path) -> Path:
    """The raw BTCV download: RawData/Training/{img,label}, RawData/Testing/img."""
    root = tmp_path / "Abdomen" / "RawData"
    for n in (2, 1, 21):
        write_nifti(root / "Training" / "img" / f"img{n:04d}.nii.gz", volume(n))
        write_nifti(root / "Training" / "label" / f"label{n:04d}.nii.gz", volume(n, labels=True))
    write_nifti(root / "Testing" / "img" / "img0061.nii.gz", volume(61))
    return root


def test_raw_btcv_layout(btcv_root: Path):
    for root in (btcv_root, btcv_root.parent, btcv_root / "Training"):
        assert find_reader(root).name == "btcv"
        items = read_dataset(root)
        assert [(Path(i["image"]).name, Path(i["label"]).name) for i in items] == [
            ("img0001.nii.gz", "label0001.nii.gz"),
            ("img0002.nii.gz", "label0002.nii.gz"),
            ("img0021.nii.gz", "label0021.nii.gz"),
        ]
    assert read_dataset(btcv_root, layout="btcv", section="test") == [
        {"image": str(btcv_root / "Testing/img/img0061.nii.gz")}
    ]
    (btcv_root / "Training" / "label" / "label0002.nii.gz").unlink()
    with pytest.raises(DatasetError, match="img0002.nii.gz: no label file found"):
        read_dataset(btcv_root)
    assert len(BTCVReader(on_missing="skip").read(btcv_root)) == 2
    with pytest.raises(ValueError, match="section must be one of"):
        BTCVReader(section="validation")


def test_btcv_with_msd_folder_names_and_2d_folders_are_not_btcv(tmp_path: Path):
    root = tmp_path / "btcv_tr"
    write_nifti(root / "imagesTr" / "img0003.nii.gz", volume(3))
    write_nifti(root / "labelsTr" / "label0003.nii.gz", volume(3, labels=True))
    expected = [{"image": str(root / "imagesTr/img0003.nii.gz"), "label": str(root / "labelsTr/label0003.nii.gz")}]
    assert read_dataset(root, layout="btcv") == expected == read_dataset(root)  # auto: msd folders, same pairs
    flat = tmp_path / "slices"
    (flat / "img").mkdir(parents=True)
    (flat / "label").mkdir()
    (flat / "img" / "img0001.png").write_bytes(b"png")
    (flat / "label" / "label0001.png").write_bytes(b"png")
    assert not BTCVReader.detect(flat) and find_reader(flat).name == "folders"


def test_volume_case_keys():
    assert volume_case_key("img0001.nii.gz") == volume_case_key("label0001.nii.gz", "label") == "0001"
    assert volume_case_key("case_07_seg.nrrd", "label") == volume_case_key("case_07.nrrd") == "case_07"
    assert volume_case_key("Segment.nii") == "segment"  # 'seg' is a prefix only before digits or a separator
    assert volume_case_key("liver_12.mha") == "liver_12"


def _write_transunet(root: Path) -> None:
    rng = np.random.default_rng(0)
    volume_zyx = rng.random((3, 6, 5), dtype=np.float32)
    label_zyx = rng.integers(0, 9, size=(3, 6, 5)).astype(np.float32)
    (root / "train_npz").mkdir(parents=True)
    for case in (5, 6):
        for k in range(3):
            np.savez(root / "train_npz" / f"case{case:04d}_slice{k:03d}.npz", image=volume_zyx[k], label=label_zyx[k])
    (root / "test_vol_h5").mkdir()
    with h5py.File(root / "test_vol_h5" / "case0001.npy.h5", "w") as handle:
        handle.create_dataset("image", data=volume_zyx)
        handle.create_dataset("label", data=label_zyx)


def test_transunet_layout_with_lists(tmp_path: Path):
    root = tmp_path / "Synapse"
    _write_transunet(root)
    lists = root / "lists" / "lists_Synapse"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("case0005_slice000\ncase0005_slice001\ncase0005_slice002\n\n")
    (lists / "test_vol.txt").write_text("case0001\n")
    assert find_reader(root).name == "transunet"
    items = read_dataset(root)
    assert [Path(i["image"]).name for i in items] == [f"case0005_slice00{k}.npz" for k in range(3)]  # case 6 unlisted
    assert all(i["image"] == i["label"] for i in items)
    assert read_dataset(root, layout="transunet", section="test") == [
        {"image": str(root / "test_vol_h5/case0001.npy.h5"), "label": str(root / "test_vol_h5/case0001.npy.h5")}
    ]
    (lists / "train.txt").write_text("case0005_slice000\ncase0009_slice000\n")
    with pytest.raises(DatasetError, match="case0009_slice000.npz: listed in .*train.txt but not found"):
        read_dataset(root)
    assert len(TransUNetSynapseReader(on_missing="skip").read(root)) == 1
    (lists / "train.txt").unlink()
    assert len(read_dataset(root)) == 6  # no list: every slice
    with pytest.raises(ValueError, match="list file"):
        TransUNetSynapseReader(list_dir=tmp_path / "nowhere").read(root)


def test_transunet_image_readers(tmp_path: Path):
    root = tmp_path / "Synapse"
    _write_transunet(root)
    slice_file = str(root / "train_npz" / "case0005_slice001.npz")
    volume_file = str(root / "test_vol_h5" / "case0001.npy.h5")
    with np.load(slice_file) as stored:
        stored_image, stored_label = stored["image"], stored["label"]
    item = {"image": slice_file, "label": slice_file}
    item = LoadImaged("image", reader=TransUNetNpzReader("image"), ensure_channel_first=True)(item)
    item = LoadImaged("label", reader=TransUNetNpzReader(key="label"), ensure_channel_first=True)(item)
    assert item["image"].shape == (1, 5, 6)  # stored (rows, columns) = (6, 5), loaded reversed
    np.testing.assert_array_equal(item["image"][0].numpy(), stored_image.T)
    np.testing.assert_array_equal(item["label"][0].numpy(), stored_label.T)
    assert torch.equal(item["image"].affine, torch.eye(4, dtype=torch.float64))
    assert np.allclose(item["image"].pixdim, 1.0)
    volume_image = LoadImage(reader=TransUNetH5Reader("image"), image_only=True)(volume_file)
    assert volume_image.shape == (5, 6, 3)
    assert torch.equal(volume_image[:, :, 1], torch.as_tensor(stored_image.T))  # slice k of the volume = npz slice k
    untouched = LoadImage(reader=TransUNetNpzReader("image", reverse_indexing=False), image_only=True)(slice_file)
    np.testing.assert_array_equal(untouched.numpy(), stored_image)
    both = TransUNetNpzReader("label")
    stacked, meta = both.get_data(both.read([slice_file, slice_file]))
    assert stacked.shape == (2, 5, 6) and meta["original_channel_dim"] == 0
    assert both.verify_suffix(slice_file) and not both.verify_suffix(volume_file)
    assert TransUNetH5Reader().verify_suffix([volume_file]) and not TransUNetH5Reader().verify_suffix("a.nii.gz")
    with pytest.raises(ValueError, match="no array named 'mask'"):
        TransUNetNpzReader("mask").read(slice_file)
    with pytest.raises(ValueError, match="no dataset named 'mask'"):
        TransUNetH5Reader("mask").read(volume_file)
    with pytest.raises(ValueError, match="key must name"):
        TransUNetNpzReader("")
