"""Embedded CT samples: MSD Task07 and raw BTCV layouts, TransUNet files, determinism, no-overwrite behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, LoadImaged

from attnseg_monai.data import (
    MANIFEST_NAME,
    SYNAPSE_CLASSES,
    TRANSUNET_TRAIN_CASES,
    BTCVToSynapse8d,
    DatasetError,
    find_reader,
    make_pancreas_sample,
    make_synapse_sample,
    make_synapse_transunet_sample,
    read_dataset,
    validate_volume_pairs,
    verify_sample,
)
from attnseg_monai.data import ct_samples as ct_samples_module
from attnseg_monai.io.transunet import TransUNetH5Reader, TransUNetNpzReader

SMALL = {"shape": (64, 64, 16)}


def _voxels(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.fixture(scope="module")
def pancreas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("ct") / "Task07_Pancreas"
    return out, make_pancreas_sample(out, num_cases=3, num_test=1, **SMALL)


def test_pancreas_sample_is_an_msd_task(pancreas: tuple[Path, list[dict[str, str]]]):
    out, items = pancreas
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == {"0": "background", "1": "pancreas", "2": "cancer"}
    assert dataset["modality"] == {"0": "CT"} and dataset["numTraining"] == 3 and dataset["numTest"] == 1
    assert dataset["training"][0] == {
        "image": "./imagesTr/pancreas_001.nii.gz",
        "label": "./labelsTr/pancreas_001.nii.gz",
    }
    assert dataset["test"] == ["./imagesTs/pancreas_101.nii.gz"]
    assert [Path(i["image"]).relative_to(out).as_posix() for i in items] == [
        f"imagesTr/pancreas_00{n}.nii.gz" for n in (1, 2, 3)
    ]
    assert find_reader(out).name == "msd" and read_dataset(out) == items
    assert read_dataset(out, layout="msd", section="test") == [{"image": str(out / "imagesTs/pancreas_101.nii.gz")}]
    infos = validate_volume_pairs(items, label_values={0, 1, 2})
    assert [info.label_values for info in infos] == [(0, 1, 2), (0, 1, 2), (0, 1)]  # case 3 has no tumour
    assert all(info.shape == (64, 64, 16) and np.allclose(info.spacing, (0.8, 0.8, 2.5)) for info in infos)
    label = nib.load(items[0]["label"])
    assert label.get_data_dtype() == np.uint8 and nib.load(items[0]["image"]).get_data_dtype() == np.int16
    assert np.allclose(label.affine, nib.load(items[0]["image"]).affine)
    assert verify_sample(out)


def test_synapse_sample_is_raw_btcv_and_maps_to_the_eight_organs(tmp_path: Path):
    items = make_synapse_sample(tmp_path / "btcv", num_cases=2, **SMALL)
    assert [Path(i["label"]).relative_to(tmp_path / "btcv").as_posix() for i in items] == [
        "label/label0001.nii.gz",
        "label/label0002.nii.gz",
    ]
    assert find_reader(tmp_path / "btcv").name == "btcv" and read_dataset(tmp_path / "btcv") == items
    infos = validate_volume_pairs(items, label_values=range(14))
    assert all(set(range(14)) == set(info.label_values) for info in infos)  # all 13 BTCV organs
    loaded = Compose([LoadImaged(["image", "label"], ensure_channel_first=True), BTCVToSynapse8d("label")])(items[0])
    assert loaded["image"].shape == (1, 64, 64, 16)
    assert torch.equal(torch.unique(loaded["label"]), torch.arange(len(SYNAPSE_CLASSES), dtype=torch.float32))


def test_transunet_sample_holds_the_raw_phantoms_preprocessed(tmp_path: Path):
    raw = make_synapse_sample(tmp_path / "raw", num_cases=5, **SMALL)
    slices = make_synapse_transunet_sample(tmp_path / "tu", num_train_cases=1, num_test_cases=1, **SMALL)
    assert len(slices) == 16 and Path(slices[3]["image"]).name == "case0005_slice003.npz"
    assert TRANSUNET_TRAIN_CASES[0] == 5
    assert (tmp_path / "tu/lists/lists_Synapse/test_vol.txt").read_text() == "case0001\n"
    assert read_dataset(tmp_path / "tu") == slices and find_reader(tmp_path / "tu").name == "transunet"
    volumes = read_dataset(tmp_path / "tu", layout="transunet", section="test")
    validate_volume_pairs(slices[:2] + volumes, label_values=range(9))
    load_raw = Compose([LoadImaged(["image", "label"]), BTCVToSynapse8d("label")])
    load_slice = Compose([LoadImaged("image", reader=TransUNetNpzReader("image")),
                          LoadImaged("label", reader=TransUNetNpzReader("label"))])  # fmt: skip
    load_volume = Compose([LoadImaged("image", reader=TransUNetH5Reader("image")),
                           LoadImaged("label", reader=TransUNetH5Reader("label"))])  # fmt: skip
    case5 = load_raw(raw[4])  # img0005 is case0005
    expected = (torch.clamp(case5["image"][:, :, 7], -125, 275) + 125) / 400
    one = load_slice(slices[7])
    assert torch.allclose(one["image"], expected.float(), atol=1e-6)
    assert torch.equal(one["label"], case5["label"][:, :, 7])
    case1, volume = load_raw(raw[0]), load_volume(volumes[0])
    assert volume["image"].shape == (64, 64, 16) and torch.equal(volume["label"], case1["label"])


def test_samples_are_deterministic(tmp_path: Path):
    a = make_pancreas_sample(tmp_path / "a", num_cases=2, num_test=1, **SMALL)
    b = make_pancreas_sample(tmp_path / "b", num_cases=2, num_test=1, **SMALL)
    for item_a, item_b in zip(a, b, strict=True):
        for key in ("image", "label"):
            assert Path(item_a[key]).read_bytes() == Path(item_b[key]).read_bytes()
    manifest = [json.loads((tmp_path / x / MANIFEST_NAME).read_text()) for x in ("a", "b")]
    assert manifest[0]["files"] == manifest[1]["files"] and len(manifest[0]["files"]) == 6  # json, 4 Tr, 1 Ts
    one = make_pancreas_sample(tmp_path / "one", num_cases=1, num_test=0, **SMALL)
    assert Path(one[0]["image"]).read_bytes() == Path(a[0]["image"]).read_bytes()  # case 1 ignores the count
    other = make_pancreas_sample(tmp_path / "seed1", num_cases=1, num_test=0, seed=1, **SMALL)
    assert not np.array_equal(_voxels(other[0]["image"]), _voxels(a[0]["image"]))
    btcv = make_synapse_sample(tmp_path / "btcv", num_cases=1, **SMALL)
    assert not np.array_equal(_voxels(btcv[0]["image"]), _voxels(a[0]["image"]))  # its own random stream


def test_complete_sample_is_not_regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    items = make_synapse_sample(tmp_path / "btcv", num_cases=1, **SMALL)

    def must_not_render(*args, **kwargs):
        raise AssertionError("a complete sample was generated again")

    monkeypatch.setattr(ct_samples_module, "render_ct_phantom", must_not_render)
    assert make_synapse_sample(tmp_path / "btcv", num_cases=1, **SMALL) == items
    with pytest.raises(AssertionError, match="generated again"):  # other settings do need drawing
        make_synapse_sample(tmp_path / "btcv", num_cases=1, seed=2, **SMALL)


def test_changed_files_are_never_overwritten(tmp_path: Path):
    out = tmp_path / "task"
    items = make_pancreas_sample(out, num_cases=1, num_test=0, **SMALL)
    edited = Path(items[0]["label"])
    edited.write_bytes(b"a radiologist's corrected mask")
    (out / "dataset.json").write_text("{}")
    with pytest.raises(DatasetError) as info:
        make_pancreas_sample(out, num_cases=1, num_test=0, **SMALL)
    assert sorted(p for p, _ in info.value.problems) == sorted([str(edited), str(out / "dataset.json")])
    assert edited.read_bytes() == b"a radiologist's corrected mask" and (out / "dataset.json").read_text() == "{}"
    assert not verify_sample(out)


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="num_cases"):
        make_pancreas_sample(tmp_path, num_cases=0)
    with pytest.raises(ValueError, match="shape"):
        make_synapse_sample(tmp_path, shape=(64, 64, 8))
    with pytest.raises(ValueError, match="spacing"):
        make_synapse_sample(tmp_path, spacing=(0.8, 0.8))
    with pytest.raises(ValueError, match="18 training"):
        make_synapse_transunet_sample(tmp_path, num_train_cases=19)
    assert not any(tmp_path.iterdir())  # nothing written
