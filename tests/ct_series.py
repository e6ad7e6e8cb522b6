"""One writer of small CT DICOM series for the tests (pydicom): the tags every slice needs, geometry from the caller."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_ct_slices(
    folder: Path,
    pixels: Sequence[np.ndarray],
    *,
    positions: Sequence[Sequence[float]],
    orientation: Sequence[float],
    pixel_spacing: tuple[float, float],
    thickness: float,
    file_names: Sequence[str],
    rescale_intercept: int = 0,
    patient_id: str = "0",
) -> Path:
    """Write one CT image storage file per slice into ``folder`` (created) and return it.

    Args:
        folder: the series folder.
        pixels: per slice, the (rows, columns) values in HU; stored as int16 ``HU - rescale_intercept``.
        positions: per slice, ImagePositionPatient (LPS mm).
        orientation: ImageOrientationPatient (row direction, then column direction).
        pixel_spacing: DICOM PixelSpacing, (row spacing, column spacing).
        thickness: SliceThickness.
        file_names: per slice, the file name (an order other than the positions' tests the reader's sorting).
        rescale_intercept: RescaleIntercept (slope 1).
        patient_id: PatientID.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k, (values, position, name) in enumerate(zip(pixels, positions, file_names, strict=True)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Phantom^Test", patient_id
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
        ds.SliceThickness = f"{thickness:g}"
        ds.Rows, ds.Columns = values.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = str(rescale_intercept), "1"
        ds.PixelData = np.ascontiguousarray(np.asarray(values) - rescale_intercept).astype(np.int16).tobytes()
        pydicom.dcmwrite(folder / name, ds, write_like_original=False)
    return folder
