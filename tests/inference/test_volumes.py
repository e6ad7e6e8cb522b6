"""3D inputs through a tiny outside CT bundle (RAS reorientation + resampling, Invertd): every volume format comes
back in its own geometry."""

from __future__ import annotations

import json

import itk
import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage

from attnseg_monai.inference import MANIFEST_NAME, BundlePredictor

from .helpers import OBLIQUE_AFFINE, QUIET, ct_volume, write_dicom_series


@pytest.fixture
def predictor3d(bundle3d):
    root, ckpt = bundle3d

    def factory(**settings) -> BundlePredictor:
        return BundlePredictor(**{"device": "cpu", **settings}).from_bundle(root, checkpoint=ckpt, trust_bundle=True)

    return factory


def test_nifti_affine_and_header_round_trip(predictor3d, tmp_path):
    vol = ct_volume()
    src = nib.Nifti1Image(vol, OBLIQUE_AFFINE)
    src.header.set_xyzt_units("mm", "sec")
    src.set_qform(OBLIQUE_AFFINE, code=1)
    src.set_sform(OBLIQUE_AFFINE, code=4)
    (tmp_path / "in").mkdir()
    nib.save(src, tmp_path / "in" / "ct_01.nii.gz")
    summary = predictor3d().predict_files(
        tmp_path / "in", tmp_path / "out", save_probabilities=True, save_overlays=True, **QUIET
    )
    assert summary.ok, summary.failed
    seg = nib.load(tmp_path / "out" / "ct_01_seg.nii.gz")
    assert seg.shape == vol.shape and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(seg.affine, OBLIQUE_AFFINE, atol=1e-5)
    assert int(seg.header["qform_code"]) == 1 and int(seg.header["sform_code"]) == 4
    assert seg.header.get_xyzt_units() == ("mm", "sec")
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2}
    probs = nib.load(tmp_path / "out" / "ct_01_probabilities.nii.gz")
    assert probs.shape == (*vol.shape, 3)
    np.testing.assert_allclose(probs.affine, OBLIQUE_AFFINE, atol=1e-5)
    p = np.asarray(probs.dataobj)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-3)
    # the labels are the argmax of the probabilities, both inverted from the resampled RAS grid
    agree = np.mean(np.argmax(p, -1) == np.asarray(seg.dataobj))
    assert agree > 0.98
    assert (tmp_path / "out" / "ct_01_overlay.png").is_file()


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_itk_volumes_keep_origin_spacing_direction(predictor3d, tmp_path, ext):
    vol = ct_volume(shape=(28, 24, 8), seed=1)
    image = itk.image_from_array(np.ascontiguousarray(vol.transpose(2, 1, 0)))
    image.SetSpacing([0.8, 0.9, 2.5])
    image.SetOrigin([12.0, -40.0, 100.0])
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    image.SetDirection(itk.matrix_from_array(direction))
    (tmp_path / "in").mkdir()
    itk.imwrite(image, str(tmp_path / "in" / f"vol{ext}"))
    summary = predictor3d().predict_files(tmp_path / "in", tmp_path / "out", output_ext=ext, **QUIET)
    assert summary.ok, summary.failed
    out = itk.imread(str(tmp_path / "out" / f"vol_seg{ext}"))
    np.testing.assert_allclose(np.asarray(out.GetSpacing()), [0.8, 0.9, 2.5], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.GetOrigin()), [12.0, -40.0, 100.0], atol=1e-4)
    np.testing.assert_allclose(itk.array_from_matrix(out.GetDirection()), direction, atol=1e-6)
    assert itk.array_from_image(out).shape == (8, 24, 28)
    # the default ending (the bundle's .nii.gz) holds the same world geometry
    predictor3d().predict_files(tmp_path / "in", tmp_path / "out_nii", **QUIET)
    seg = nib.load(tmp_path / "out_nii" / "vol_seg.nii.gz")
    expected = LoadImage(image_only=True)(str(tmp_path / "in" / f"vol{ext}")).affine.numpy()
    np.testing.assert_allclose(seg.affine, expected, atol=1e-4)


def test_dicom_series_folder(predictor3d, tmp_path):
    vol = ct_volume(shape=(24, 20, 6), seed=2).astype(np.int16)
    write_dicom_series(tmp_path / "in" / "patient1_ct", vol)
    (tmp_path / "in" / "empty_series").mkdir()
    (tmp_path / "in" / "empty_series" / "a.dcm").write_bytes(b"")
    summary = predictor3d().predict_files(tmp_path / "in", tmp_path / "out", **QUIET)
    assert summary.written == ["patient1_ct"]
    assert [f["case"] for f in summary.failed] == ["empty_series"] and "empty" in summary.failed[0]["error"]
    seg = nib.load(tmp_path / "out" / "patient1_ct_seg.nii.gz")
    assert seg.shape == (24, 20, 6)
    reference = LoadImage(image_only=True)(str(tmp_path / "in" / "patient1_ct"))
    np.testing.assert_allclose(seg.affine, reference.affine.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.sqrt((seg.affine[:3, :3] ** 2).sum(0)), [0.7, 0.8, 2.5], atol=1e-4)
    record = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["cases"]["patient1_ct"]
    assert record["input"].endswith("patient1_ct") and record["status"] == "done"


def test_2d_image_given_to_a_3d_bundle_fails_clearly(predictor3d, tmp_path):
    from .helpers import write_png

    write_png(tmp_path / "in" / "photo.png", 32, 32, channels=1)
    summary = predictor3d().predict_files(tmp_path / "in", tmp_path / "out", **QUIET)
    assert summary.failed and "2D image" in summary.failed[0]["error"]
