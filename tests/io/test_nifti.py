"""Predictions written as NIfTI keep the input's grid, affine, qform/sform codes and integer labels.

Every input volume encodes its own world coordinates: the intensity of a voxel is ``DIRECTION . position`` (mm),
and the "network" cuts that intensity into bands (class = nearest band centre). After preprocessing
(``Orientationd`` RAS + ``Spacingd`` to another spacing), slab inference, ``Invertd`` and ``SaveImaged``, every
written voxel farther from a band boundary than the resampling can move a point must carry exactly the class of
its own world position, so a flipped, permuted or shifted geometry fails.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd, SaveImaged, Spacingd

from attnseg_monai.inferers import SlabSlidingWindowInferer
from attnseg_monai.io.nifti import SourceGeometryNibabelWriter, source_nifti_header
from tests.ct_series import write_ct_slices

WRITER = "attnseg_monai.io.nifti.SourceGeometryNibabelWriter"
DIRECTION = np.array([0.6, -0.48, 0.64])  # unit vector; intensity = DIRECTION . world position (mm)
NEW_PIXDIM = (1.1, 1.3, 1.7)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class BandNet(torch.nn.Module):
    """Logits ``-|x - centre_c|``: the class of a voxel is the band of its intensity (no parameters)."""

    def __init__(self, centres: np.ndarray, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("centres", torch.as_tensor(centres, dtype=torch.float32))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return -(x / self.scale - self.centres.view(shape)).abs()


def bands(values: np.ndarray, classes: int) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return lo + (np.arange(classes) + 0.5) * (hi - lo) / classes


def band_labels(values: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class of each value and its distance to the nearest decision boundary (midpoint of two centres)."""
    labels = np.abs(values[..., None] - centres).argmin(-1)
    midpoints = (centres[1:] + centres[:-1]) / 2
    return labels, np.abs(values[..., None] - midpoints).min(-1)


def world_grid(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World (RAS) position of every voxel centre, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = math.radians(degrees)
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def run_pipeline(image: str | Path, net: torch.nn.Module, out_dir: Path, reader: str | None = None) -> Path:
    """Preprocess, infer with the slab inferer inside a SupervisedEvaluator, invert and save; return the file."""
    pre = Compose(
        [
            LoadImaged("image", reader=reader),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacingd("image", pixdim=NEW_PIXDIM, mode="bilinear"),
        ]
    )
    post = Compose(
        [
            Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True),
            SaveImaged(
                "pred",
                output_dir=out_dir,
                output_postfix="seg",
                output_ext=".nii.gz",
                resample=False,
                output_dtype=np.uint8,
                separate_folder=False,
                writer=WRITER,
                print_log=False,
            ),
        ]
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset([{"image": str(image)}], transform=pre), batch_size=1),
        network=net,
        inferer=SlabSlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=2, overlap=0.25, mode="gaussian"),
        postprocessing=post,
    )
    evaluator.run()
    written = sorted(out_dir.glob("*_seg.nii.gz"))
    assert len(written) == 1, written
    return written[0]


def check_labels(path: Path, centres: np.ndarray, to_values, tolerance: float) -> None:
    """Written labels are integer class indices and equal the band of each voxel's own world position."""
    img = nib.load(path)
    labels = np.asarray(img.dataobj)
    assert np.issubdtype(labels.dtype, np.integer)
    assert set(np.unique(labels)) <= set(range(len(centres)))
    expected, margin = band_labels(to_values(world_grid(img.affine, img.shape)), centres)
    far = margin > tolerance
    assert far.mean() > 0.5  # most voxels are checked exactly
    np.testing.assert_array_equal(labels[far], expected[far])
    assert (labels == expected).mean() > 0.95


# ---------------------------------------------------------------------------------------------------------------
# (a) NIfTI inputs: oblique, LPS-stored, differing qform/sform, qform only


def oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation([1.0, 2.0, 0.5], 25.0) @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-12.0, 20.0, 31.0]
    return affine


def lps_affine() -> np.ndarray:  # stored as a DICOM converter without reorientation writes it: x -> L, y -> P
    affine = np.diag([-0.75, -0.7, 3.0, 1.0])
    affine[:3, 3] = [98.0, 120.0, -48.0]
    return affine


NIFTI_CASES = {
    "oblique_q1_s2": (oblique_affine(), None, 1, 2),
    "lps_q1_s1": (lps_affine(), None, 1, 1),
    # an sform with a small shear next to its rigid qform: MONAI's reader swaps in the qform when loading
    "sform_differs_q1_s2": (
        oblique_affine(),
        np.array([[1, 0.02, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
        1,
        2,
    ),
    "qform_only_q2_s0": (lps_affine(), None, 2, 0),
}


def write_nifti(path: Path, affine: np.ndarray, sform_extra: np.ndarray | None, qcode: int, scode: int) -> None:
    sform = affine if sform_extra is None else affine @ sform_extra
    shape = (40, 36, 14)
    values = world_grid(sform if scode > 0 else affine, shape) @ DIRECTION  # nibabel's affine of the file
    img = nib.Nifti1Image(values.astype(np.float32), affine)
    img.set_qform(affine, code=qcode)
    img.set_sform(sform, code=scode)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


@pytest.mark.parametrize("case", sorted(NIFTI_CASES))
def test_nifti_prediction_keeps_source_geometry(tmp_path: Path, case: str):
    affine, sform_extra, qcode, scode = NIFTI_CASES[case]
    source_path = tmp_path / "case.nii.gz"
    write_nifti(source_path, affine, sform_extra, qcode, scode)
    source = nib.load(source_path)
    centres = bands(np.asarray(source.dataobj), classes=3)

    written_path = run_pipeline(source_path, BandNet(centres), tmp_path / "out")

    written = nib.load(written_path)
    header, source_header = written.header, source.header
    assert written.shape == source.shape
    assert written.get_data_dtype() == np.uint8
    assert (int(header["qform_code"]), int(header["sform_code"])) == (qcode, scode)
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    np.testing.assert_allclose(written.get_qform(), source.get_qform(), atol=1e-6)
    np.testing.assert_allclose(header.get_sform(), source_header.get_sform(), atol=1e-6)
    assert header.get_xyzt_units() == source_header.get_xyzt_units()
    # the data must match the geometry nibabel reports for the *source* file (the intensities are its coordinates);
    # a point moves by at most half a resampled voxel (nearest inversion) plus half a source voxel (border clamp)
    pixdim = np.asarray(source.header.get_zooms()[:3])
    tolerance = 0.5 * float(np.linalg.norm(NEW_PIXDIM)) + 0.5 * float(np.linalg.norm(pixdim))
    check_labels(written_path, centres, lambda world: world @ DIRECTION, tolerance)


def test_monai_writer_alone_drops_the_codes(tmp_path: Path):
    """Why the writer exists: MONAI's NibabelWriter writes qform/sform code 1/1 whatever the source had."""
    affine = oblique_affine()
    write_nifti(tmp_path / "src.nii.gz", affine, None, qcode=1, scode=2)
    load = Compose([LoadImaged("image", reader="NibabelReader"), EnsureChannelFirstd("image")])
    data = load({"image": str(tmp_path / "src.nii.gz")})
    SaveImaged("image", output_dir=tmp_path, output_postfix="plain", separate_folder=False, print_log=False)(data)
    plain = nib.load(tmp_path / "src_plain.nii.gz")
    assert (int(plain.header["qform_code"]), int(plain.header["sform_code"])) == (1, 1), (
        "MONAI's NibabelWriter now keeps the codes; SourceGeometryNibabelWriter may be reduced to its other fixes"
    )


def test_header_from_metadata_when_the_file_is_gone(tmp_path: Path):
    path = tmp_path / "gone.nii.gz"
    write_nifti(path, lps_affine(), None, qcode=2, scode=0)
    image = LoadImaged("image", reader="NibabelReader")({"image": str(path)})["image"]
    os.remove(path)
    header = source_nifti_header(image.meta)
    assert header is not None
    assert (int(header["qform_code"]), int(header["sform_code"])) == (2, 0)
    np.testing.assert_allclose(header.get_qform(), lps_affine(), atol=1e-5)
    assert source_nifti_header({"filename_or_obj": "x.png", "spatial_shape": (3, 4)}) is None
    assert source_nifti_header(None) is None


def test_prediction_saved_off_the_source_grid_keeps_codes_and_its_own_affine(tmp_path: Path):
    path = tmp_path / "src.nii.gz"
    write_nifti(path, oblique_affine(), None, qcode=1, scode=2)
    image = LoadImaged("image", reader="NibabelReader")({"image": str(path)})["image"]
    other = oblique_affine() @ np.diag([2.0, 2.0, 1.0, 1.0])
    meta = {k: v for k, v in image.meta.items() if k != "affine"}
    labels = MetaTensor(torch.ones(1, 11, 10, 9) * 2.9999, affine=torch.as_tensor(other), meta=meta)
    writer = SourceGeometryNibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(labels, channel_dim=0)
    writer.set_metadata(labels.meta, resample=False)
    writer.write(tmp_path / "resampled.nii.gz")
    out = nib.load(tmp_path / "resampled.nii.gz")
    assert out.shape == (11, 10, 9)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 2)
    np.testing.assert_allclose(out.affine, other, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.dataobj), 3)  # rounded, not truncated to 2


def test_writer_rejects_negative_tolerance():
    with pytest.raises(ValueError, match="atol"):
        SourceGeometryNibabelWriter(atol=-1.0)


# ---------------------------------------------------------------------------------------------------------------
# (b) a DICOM series folder (CT image storage, LPS patient coordinates), written here with pydicom


def write_ct_series(folder: Path, rows: int, cols: int, slices: int, iop, ipp0, pixel_spacing, thickness) -> None:
    pydicom = pytest.importorskip("pydicom")
    row_dir, col_dir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row_dir, col_dir)
    dr, dc = pixel_spacing  # DICOM PixelSpacing = (row spacing, column spacing)
    positions = [np.asarray(ipp0, float) + k * thickness * normal for k in range(slices)]
    j, i = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # j: row index, i: column index
    pixels = []
    for ipp in positions:
        lps = ipp + i[..., None] * dc * row_dir + j[..., None] * dr * col_dir
        pixels.append(np.rint(10.0 * (lps @ (LPS_TO_RAS[:3, :3] @ DIRECTION))))  # 0.1 mm steps of the RAS coordinate
    write_ct_slices(
        folder,
        pixels,
        positions=positions,
        orientation=iop,
        pixel_spacing=pixel_spacing,
        thickness=thickness,
        # file names in another order than the slice positions: the reader must sort by position
        file_names=[f"IM{(k * 5) % slices:04d}.dcm" for k in range(slices)],
        rescale_intercept=-1024,
        patient_id="geometry-0",
    )
    assert pydicom.dcmread(str(folder / "IM0000.dcm")).Modality == "CT"


def test_dicom_series_prediction_has_the_series_geometry(tmp_path: Path):
    itk = pytest.importorskip("itk")
    rows, cols, slices = 36, 40, 12
    c, s = math.cos(math.radians(12)), math.sin(math.radians(12))
    iop = [c, s, 0.0, 0.0, 0.0, -1.0]  # oblique coronal acquisition, LPS
    ipp0, pixel_spacing, thickness = (-52.0, 31.5, 104.0), (0.8, 0.65), 2.5
    folder = tmp_path / "series"
    write_ct_series(folder, rows, cols, slices, iop, ipp0, pixel_spacing, thickness)

    # the expected NIfTI (RAS) affine, straight from the DICOM tags: i along the row direction (column index),
    # j along the column direction (row index), k along the slice normal, origin at the first slice's position
    row_dir, col_dir = np.asarray(iop[:3]), np.asarray(iop[3:])
    lps = np.eye(4)
    lps[:3, 0] = row_dir * pixel_spacing[1]
    lps[:3, 1] = col_dir * pixel_spacing[0]
    lps[:3, 2] = np.cross(row_dir, col_dir) * thickness
    lps[:3, 3] = ipp0
    expected = LPS_TO_RAS @ lps
    # ITK's reading of the same folder
    series = itk.imread(str(folder))
    itk_lps = np.eye(4)
    itk_lps[:3, :3] = itk.array_from_matrix(series.GetDirection()) @ np.diag(np.asarray(series.GetSpacing()))
    itk_lps[:3, 3] = np.asarray(series.GetOrigin())
    np.testing.assert_allclose(LPS_TO_RAS @ itk_lps, expected, atol=1e-4)

    centres = bands(np.rint(10.0 * (world_grid(expected, (cols, rows, slices)) @ DIRECTION)), classes=3)
    written_path = run_pipeline(folder, BandNet(centres, scale=1.0), tmp_path / "out", reader="ITKReader")

    written = nib.load(written_path)
    assert written.shape == (cols, rows, slices)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, expected, atol=1e-4)
    np.testing.assert_allclose(written.get_qform(), expected, atol=1e-4)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 1)
    assert written.header.get_xyzt_units()[0] == "mm"
    tolerance = 10.0 * 0.5 * (float(np.linalg.norm(NEW_PIXDIM)) + float(np.linalg.norm([0.8, 0.65, 2.5])))
    check_labels(written_path, centres, lambda world: np.rint(10.0 * (world @ DIRECTION)), tolerance)
