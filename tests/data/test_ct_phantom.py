"""Generated CT phantoms: scanner-like geometry in the NIfTI header, attenuation of each structure, determinism."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from attnseg_monai.data import BTCV_LABELS, STRUCTURE_HU, encode_nifti, phantom_affine, render_ct_phantom
from attnseg_monai.data.ct_phantom import DEFAULT_SHAPE, DEFAULT_SPACING, CTPhantom


@pytest.fixture(scope="module")
def phantom() -> CTPhantom:
    """One default-size case with a tumour (about a second to draw)."""
    return render_ct_phantom(np.random.default_rng([0, 4, 0, 0]), tumour=True)


def _core(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """The mask without its rim (blur and partial volume live there); the mask itself if erosion empties it."""
    core = ndimage.binary_erosion(mask, iterations=iterations)
    return core if core.sum() >= 20 else mask


def test_geometry_is_scanner_like(phantom: CTPhantom, tmp_path: Path):
    assert phantom.image.shape == DEFAULT_SHAPE and phantom.image.dtype == np.int16
    assert phantom.label.shape == DEFAULT_SHAPE and phantom.label.dtype == np.uint8
    assert np.allclose(phantom.spacing, DEFAULT_SPACING)
    assert max(phantom.spacing) / min(phantom.spacing) > 3  # 0.8 mm pixels, 2.5 mm slices
    rotation = phantom.affine[:3, :3] / np.asarray(phantom.spacing)
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9) and np.linalg.det(rotation) > 0
    assert not np.allclose(np.abs(rotation), np.eye(3), atol=1e-3)  # oblique: tilted, not only flipped
    assert nib.aff2axcodes(phantom.affine) == ("L", "P", "S")  # stored the DICOM way
    assert np.abs(phantom.affine[2, 3]) > 100  # a table position, not the origin

    path = tmp_path / "case.nii.gz"
    path.write_bytes(encode_nifti(phantom.image, phantom.affine))
    image = nib.load(path)
    header = image.header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    assert np.allclose(image.get_sform(), phantom.affine) and np.allclose(image.get_qform(), phantom.affine, atol=1e-4)
    assert np.allclose(header.get_zooms(), DEFAULT_SPACING) and header.get_xyzt_units() == ("mm", "sec")
    raw = gzip.decompress(path.read_bytes())
    assert struct.unpack("<ff", raw[112:120]) == (1.0, 0.0)  # explicit identity scaling, as scanners write it
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), phantom.image)
    # the sform rows as stored, and the quaternion's handedness: the header itself, not only nibabel's reading
    stored = np.stack([header["srow_x"], header["srow_y"], header["srow_z"]])
    assert np.allclose(stored, phantom.affine[:3], atol=1e-4) and float(header["pixdim"][0]) == 1.0


def test_structures_have_their_attenuation(phantom: CTPhantom):
    image, label = phantom.image.astype(np.float64), phantom.label
    present = set(np.unique(label).tolist())
    assert present == set(BTCV_LABELS)  # all 13 organs and the background

    def mean(name: str, iterations: int = 1) -> float:
        ids = {v: k for k, v in BTCV_LABELS.items()}
        return float(image[_core(label == ids[name], iterations)].mean())

    for name, tolerance in (("liver", 8), ("spleen", 8), ("pancreas", 10), ("gallbladder", 10), ("aorta", 25)):
        assert abs(mean(name) - STRUCTURE_HU[name]) < tolerance, name
    assert STRUCTURE_HU["kidney_medulla"] - 5 < mean("kidney_left") < STRUCTURE_HU["kidney_cortex"] + 5
    assert mean("aorta") > mean("kidney_right") > mean("liver") > mean("pancreas") > mean("gallbladder")
    stomach = image[_core(label == 7)]
    assert (stomach < -900).mean() > 0.05 and abs(np.median(stomach[stomach > -300]) - 20) < 10  # gas over content
    # outside the body: air; just inside the skin: fat; somewhere: bone well above soft tissue
    assert abs(image[:4, :4, :].mean() - STRUCTURE_HU["air"]) < 10 and image[:4].std() < 20
    centre_column = image[image.shape[0] // 2 - 2 : image.shape[0] // 2 + 2, :, :]
    assert np.percentile(image, 99.9) > 500 and centre_column.max() > 700  # vertebral column on the midline
    fat = image[(label == 0) & (image > -200) & (image < -50)]
    assert fat.size > 1000 and abs(fat.mean() - (-100)) < 25
    assert image.min() >= -1024 and image.max() <= 3071
    noise = np.std(np.diff(image[_core(label == 6, 2)]))  # voxel-to-voxel noise inside the liver
    assert 5 < noise < 40


def test_tumour_is_a_hypoattenuating_part_of_the_pancreas(phantom: CTPhantom):
    assert phantom.tumour is not None and phantom.tumour.sum() > 20
    assert np.all(phantom.label[phantom.tumour] == 11)  # BTCV labels count the tumour as pancreas
    pancreas_only = (phantom.label == 11) & ~phantom.tumour
    image = phantom.image.astype(np.float64)
    assert image[_core(phantom.tumour)].mean() < image[_core(pancreas_only)].mean() - 12
    no_tumour = render_ct_phantom(np.random.default_rng([0, 4, 0, 2]), (64, 64, 16))
    assert no_tumour.tumour is None


def test_rendering_is_deterministic():
    a = render_ct_phantom(np.random.default_rng([3, 5, 1]), (64, 64, 16))
    b = render_ct_phantom(np.random.default_rng([3, 5, 1]), (64, 64, 16))
    c = render_ct_phantom(np.random.default_rng([3, 5, 2]), (64, 64, 16))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert not np.array_equal(a.image, c.image) and not np.allclose(a.affine, c.affine)
    assert encode_nifti(a.image, a.affine) == encode_nifti(b.image, b.affine)  # no timestamp in the gzip stream


def test_affine_arguments():
    affine = phantom_affine((10, 20, 30), (0.5, 0.7, 3.0), tilt_deg=0.0, yaw_deg=0.0, centre_lps=(1.0, 2.0, 3.0))
    assert np.allclose(affine[:3, :3], np.diag([-0.5, -0.7, 3.0]))
    centre = affine @ np.array([4.5, 9.5, 14.5, 1.0])
    assert np.allclose(centre[:3], (-1.0, -2.0, 3.0))  # LPS (1, 2, 3) in RAS
    with pytest.raises(ValueError, match="spacing"):
        phantom_affine((10, 20, 30), (0.5, 0.0, 3.0))
    with pytest.raises(ValueError, match="shape"):
        render_ct_phantom(np.random.default_rng(0), (16, 64, 16))
    with pytest.raises(ValueError, match="noise_std"):
        render_ct_phantom(np.random.default_rng(0), (64, 64, 16), noise_std=-1)
    with pytest.raises(ValueError, match="4x4"):
        encode_nifti(np.zeros((2, 2, 2), np.int16), np.eye(3))
