"""Input discovery, safe case names, and the readers' checks with the reason each broken file gets."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from attnseg_monai.inference import InputError, collect_inputs, read_image, reader_for, sanitize_name, sniff_format
from attnseg_monai.inference.readers import DicomSeriesReader, NiftiReader, PillowImageReader
from attnseg_monai.io.suffixes import split_image_name

from .helpers import ct_volume, write_broken_set, write_dicom_series, write_png


@pytest.mark.parametrize(
    "raw,safe",
    [
        ("../../etc/passwd", "etc_passwd"),
        ("..", "case"),
        (".hidden", "hidden"),
        ("a/b\\c", "a_b_c"),
        ("patient 01 (arterial)", "patient_01_arterial"),
        ("CON", "_CON"),
        ("naïve_ß", "naïve_ß"),
        ("x" * 300, None),
    ],
)
def test_sanitize_name(raw, safe):
    out = sanitize_name(raw)
    assert "/" not in out and "\\" not in out and not out.startswith(".") and ".." not in out and len(out) <= 120
    if safe is not None:
        assert out == safe


def test_split_image_name():
    assert split_image_name("a.b.nii.gz") == ("a.b", ".nii.gz")
    assert split_image_name("A.PNG") == ("A", ".png")
    assert split_image_name("noext") == ("noext", "")


def test_folder_glob_and_datalist_discovery(tmp_path):
    write_png(tmp_path / "in" / "b.png", 8, 8)
    write_png(tmp_path / "in" / "a.png", 8, 8)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in" / "a.tif")
    (tmp_path / "in" / "readme.md").write_text("x")
    (tmp_path / "in" / "sub").mkdir()
    write_dicom_series(tmp_path / "in" / "series1", ct_volume((8, 8, 3)).astype(np.int16))
    found = collect_inputs(tmp_path / "in")
    ids = [c.case_id for c in found.cases]
    assert ids[2:] == ["b", "series1"] and ids[0].startswith("a-") and ids[1].startswith("a-") and ids[0] != ids[1]
    assert sorted(r for _, r in found.ignored)[0].startswith("folder without DICOM")
    assert any(p.endswith("readme.md") for p, _ in found.ignored)
    assert collect_inputs(tmp_path / "in" / "series1").cases[0].case_id == "series1"
    globbed = collect_inputs(str(tmp_path / "in" / "*.png"))
    assert [c.case_id for c in globbed.cases] == ["a", "b"]
    (tmp_path / "list.json").write_text(json.dumps({"validation": ["in/a.png", {"image": "in/b.png", "name": "B2"}]}))
    listed = collect_inputs(tmp_path / "list.json")
    assert [c.case_id for c in listed.cases] == ["a", "B2"]
    assert listed.cases[0].path == (tmp_path / "in" / "a.png").absolute()
    with pytest.raises(ValueError, match="not found"):
        collect_inputs(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="no file matches"):
        collect_inputs(str(tmp_path / "*.nii.gz"))
    (tmp_path / "bad.json").write_text(json.dumps({"training": [{"label": "x"}]}))
    with pytest.raises(ValueError, match="no 'image'"):
        collect_inputs(tmp_path / "bad.json")
    # the output folder inside the input folder is never read as input
    write_png(tmp_path / "in" / "out" / "x_classes.png", 8, 8)
    assert "x_classes" not in [
        c.case_id for c in collect_inputs(tmp_path / "in", exclude=[tmp_path / "in" / "out"]).cases
    ]


def test_readers_report_each_broken_file(tmp_path):
    expected = write_broken_set(tmp_path)
    reasons = {}
    for name in expected:
        try:
            read_image(tmp_path / name)
        except InputError as exc:
            assert exc.path.endswith(name)
            reasons[name] = exc.reason
    # channel and dimension problems are the predictor's (they depend on the bundle); the rest fail to read
    readable = {"good_a.png", "good_b.tif", "good_c.jpg", "rgba.png", "grey.png", "volume.nii.gz"}
    assert set(reasons) == set(expected) - readable
    assert "truncated" in reasons["truncated.png"]
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert "not a NIfTI" in reasons["garbage.nii.gz"]
    assert "content is PNG" in reasons["png_named.jpg"] and ".png" in reasons["png_named.jpg"]
    with pytest.raises(InputError, match="unsupported file type"):
        reader_for(tmp_path / "notes.txt")


def test_reader_layout_matches_monai(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    img = PillowImageReader().read(tmp_path / "x.png")
    assert tuple(img.shape) == (50, 30, 3)  # (x, y, C) as MONAI's PILReader
    np.testing.assert_array_equal(img.numpy().transpose(1, 0, 2), pixels)
    palette = Image.fromarray(pixels).convert("P")
    palette.save(tmp_path / "p.png")
    assert PillowImageReader().read(tmp_path / "p.png").shape[-1] == 3, "palette images read as colours"
    aff = np.diag([0.5, 0.7, 3.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), aff), tmp_path / "v.nii")
    vol = NiftiReader().read(tmp_path / "v.nii")
    assert tuple(vol.shape) == (4, 5, 6)
    np.testing.assert_allclose(vol.affine.numpy(), aff)
    assert sniff_format(tmp_path / "v.nii") == "nifti"


def test_truncated_nifti_and_bad_dicom_folders(tmp_path):
    nib.save(nib.Nifti1Image(np.random.rand(16, 16, 8).astype(np.float32), np.eye(4)), tmp_path / "v.nii")
    data = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.nii")
    (tmp_path / "nodicom").mkdir()
    (tmp_path / "nodicom" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="no DICOM"):
        DicomSeriesReader().read(tmp_path / "nodicom")
    write_dicom_series(tmp_path / "two" / "a", ct_volume((8, 8, 2)).astype(np.int16))
    write_dicom_series(tmp_path / "two" / "b", ct_volume((8, 8, 2)).astype(np.int16))
    for f in (tmp_path / "two" / "b").iterdir():
        f.rename(tmp_path / "two" / "a" / f"b_{f.name}")
    with pytest.raises(InputError, match="2 DICOM series"):
        DicomSeriesReader().read(tmp_path / "two" / "a")
