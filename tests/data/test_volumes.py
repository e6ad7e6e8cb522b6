"""Pre-training checks of 3D image/label pairs: every problem of every pair in one error, each naming its file."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import nibabel as nib
import nrrd
import numpy as np
import pytest

from attnseg_monai.data import (
    DatasetError,
    encode_nifti,
    phantom_affine,
    read_volume,
    read_volume_header,
    validate_volume_pairs,
)

SHAPE = (10, 8, 6)
AFFINE = phantom_affine(SHAPE, (0.8, 0.8, 2.5), tilt_deg=5.0, yaw_deg=2.0)


def write(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_nifti(array, affine))
    return str(path)


def label(values: tuple[int, ...] = (0, 1, 2), shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    for i, value in enumerate(values):
        out[(i,) + (0,) * (len(shape) - 1)] = value
    return out


def pair(root: Path, name: str, lab: np.ndarray | None = None, affine: np.ndarray = AFFINE) -> dict[str, str]:
    image = np.full(SHAPE, -50, dtype=np.int16)
    return {
        "image": write(root / "imagesTr" / f"{name}.nii.gz", image),
        "label": write(root / "labelsTr" / f"{name}.nii.gz", label() if lab is None else lab, affine),
    }


def test_valid_pairs_pass(tmp_path: Path):
    items = [pair(tmp_path, "a"), pair(tmp_path, "b", label((0, 1)))]
    infos = validate_volume_pairs(items, label_values={0, 1, 2})
    assert [i.label_values for i in infos] == [(0, 1, 2), (0, 1)]
    assert infos[0].shape == SHAPE and np.allclose(infos[0].spacing, (0.8, 0.8, 2.5))
    assert validate_volume_pairs(items, check_labels=False)[0].label_values is None
    header = read_volume_header(items[0]["image"])
    assert header.format == "nifti" and header.dtype == "int16" and np.allclose(header.affine, AFFINE)
    np.testing.assert_array_equal(read_volume(items[0]["label"]), label())


def test_every_problem_is_reported_with_its_file(tmp_path: Path):
    good = pair(tmp_path, "good")
    shape = pair(tmp_path, "shape", label(shape=(10, 8, 5)))
    shifted = AFFINE.copy()
    shifted[:3, 3] += (0.0, 0.0, 12.5)
    moved = pair(tmp_path, "moved", affine=shifted)
    resampled = pair(tmp_path, "resampled", np.where(label() > 0, 0.5, 0.0).astype(np.float32))
    stray = pair(tmp_path, "stray", label((0, 1, 7)))
    empty = pair(tmp_path, "empty", label((0,)))
    missing = {"image": good["image"], "label": str(tmp_path / "labelsTr" / "gone.nii.gz")}
    zero = pair(tmp_path, "zero")
    Path(zero["image"]).write_bytes(b"")
    truncated = pair(tmp_path, "truncated")
    data = Path(truncated["label"]).read_bytes()
    Path(truncated["label"]).write_bytes(data[: len(data) // 2])
    no_label = {"image": good["image"]}
    items = [good, shape, moved, resampled, stray, empty, missing, zero, truncated, no_label]
    with pytest.raises(DatasetError) as info:
        validate_volume_pairs(items, label_values={0, 1, 2})
    problems = dict(info.value.problems)
    assert good["label"] not in problems and len(info.value.problems) == 9
    assert problems[shape["label"]] == "label shape (10, 8, 5) differs from its image shape.nii.gz (10, 8, 6)"
    assert "label geometry differs from its image moved.nii.gz" in problems[moved["label"]]
    assert "non-integer values (e.g. 0.5)" in problems[resampled["label"]]
    assert problems[stray["label"]] == "unexpected label values [7] (allowed: [0, 1, 2])"
    assert problems[empty["label"]].startswith("label is empty (background only)")
    assert problems[missing["label"]] == "label file not found"
    assert problems[zero["image"]] == "image file is empty (0 bytes)"
    assert "corrupt" in problems[truncated["label"]]
    assert problems[good["image"]] == "missing label (no 'label' entry)"
    assert str(info.value).startswith("9 problems in 10 image/label pairs:")
    # the switches accept what they are for
    validate_volume_pairs([moved], check_geometry=False)
    validate_volume_pairs([empty], allow_empty_labels=True)
    validate_volume_pairs([stray])


def test_truncated_images_need_decoding_to_be_found(tmp_path: Path):
    item = pair(tmp_path, "a")
    noisy = np.random.default_rng(0).integers(-1000, 1000, size=SHAPE).astype(np.int16)  # does not compress away
    data = encode_nifti(noisy, AFFINE)
    Path(item["image"]).write_bytes(data[: len(data) - 40])
    validate_volume_pairs([item])  # the header is intact
    with pytest.raises(DatasetError, match="image file is corrupt"):
        validate_volume_pairs([item], decode_images=True)
    assert gzip.decompress(Path(item["label"]).read_bytes())  # the label is untouched


def test_nrrd_label_with_the_same_geometry_matches_its_nifti_image(tmp_path: Path):
    """NRRD stores LPS: the same geometry must compare equal with the RAS NIfTI header, a flipped one must not."""
    item = pair(tmp_path, "a")
    lps = np.diag([-1.0, -1.0, 1.0]) @ AFFINE[:3]
    header = {"space": "left-posterior-superior", "space directions": lps[:, :3].T, "space origin": lps[:, 3]}
    nrrd.write(str(tmp_path / "a_seg.nrrd"), label(), header, index_order="F")
    info = validate_volume_pairs([{"image": item["image"], "label": str(tmp_path / "a_seg.nrrd")}])
    assert info[0].label_values == (0, 1, 2)
    np.testing.assert_array_equal(read_volume(tmp_path / "a_seg.nrrd"), label())
    header["space"] = "right-anterior-superior"
    nrrd.write(str(tmp_path / "b_seg.nrrd"), label(), header, index_order="F")
    with pytest.raises(DatasetError, match="label geometry differs"):
        validate_volume_pairs([{"image": item["image"], "label": str(tmp_path / "b_seg.nrrd")}])


def test_transunet_files_compare_their_two_arrays(tmp_path: Path):
    good = tmp_path / "case0005_slice000.npz"
    np.savez(good, image=np.zeros((6, 5), np.float32), label=label((0, 8), (6, 5)).astype(np.float32))
    bad = tmp_path / "case0001.npy.h5"
    with h5py.File(bad, "w") as handle:
        handle.create_dataset("image", data=np.zeros((3, 6, 5), np.float32))
        handle.create_dataset("label", data=np.zeros((3, 6, 4), np.float32))
    nolabel = tmp_path / "case0006_slice000.npz"
    np.savez(nolabel, image=np.zeros((6, 5), np.float32))
    infos = validate_volume_pairs([{"image": str(good), "label": str(good)}], label_values=range(9))
    assert infos[0].shape == (5, 6) and infos[0].spacing == (1.0, 1.0) and infos[0].label_values == (0, 8)
    with pytest.raises(DatasetError) as info:
        validate_volume_pairs([{"image": str(p), "label": str(p)} for p in (bad, nolabel)])
    problems = info.value.problems
    assert [m for p, m in problems if p == str(bad)] == [
        "label shape (4, 6, 3) differs from its image case0001.npy.h5 (5, 6, 3)",
        "label is empty (background only); pass allow_empty_labels=True if volumes without foreground are intended",
    ]
    assert [p for p, m in problems if "no array named 'label'" in m] == [str(nolabel)]


def test_unsupported_and_empty_inputs(tmp_path: Path):
    folder = tmp_path / "dicom_series"
    folder.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DatasetError) as info:
        validate_volume_pairs([{"image": str(folder), "label": str(text)}])
    problems = dict(info.value.problems)
    assert "folder, not a file (DICOM series: convert to NIfTI first)" in problems[str(folder)]
    assert "unsupported volume format" in problems[str(text)]
    with pytest.raises(DatasetError, match="datalist is empty"):
        validate_volume_pairs([])
    with pytest.raises(OSError, match="unsupported"):
        read_volume_header(text)
    assert nib.load(pair(tmp_path, "x")["image"]).shape == SHAPE
