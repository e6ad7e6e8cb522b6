"""Geometry-exact NIfTI writing: predictions carry the source image's qform/sform codes, matrices and units.

MONAI's :class:`~monai.data.NibabelWriter` (used by ``SaveImaged`` for ``.nii``/``.nii.gz``) writes the
MetaTensor's affine as *both* the qform and the sform, always with code 1 ("scanner"), and leaves
``xyzt_units`` unknown. A prediction of an input whose header says ``sform_code=2`` ("aligned") or ``4`` (MNI),
or ``qform_code=0``, or whose qform differs from its sform (the qform cannot hold shears), is therefore written
with a different header than the input; tools that read the qform first (ITK, ITK-SNAP, 3D Slicer) or compare
the codes (FSL) may place or reject it differently. In addition, MONAI's ``NibabelReader`` replaces an sform
whose column norms disagree with ``pixdim`` by the qform when it loads the file
(:func:`monai.data.utils.correct_nifti_header_if_necessary`), so such a prediction even gets another affine than
nibabel reports for the input. Otherwise the affine survives ``Orientationd``/``Spacingd`` + ``Invertd`` to
within float rounding (~1e-7 mm).

:class:`SourceGeometryNibabelWriter` is that writer with the smallest fix: when the data are written on the
source grid (same spatial shape, affine within ``atol`` of the source or loaded affine), the header geometry of
the source file (read again from ``filename_or_obj``; the metadata's header fields when the file is gone) is
written exactly as it was: sform rows, quaternion, ``qfac``, ``pixdim``, both codes and the units. Otherwise (a
prediction saved in the resampled space) the MetaTensor's affine is written as in MONAI, under the source's
codes. Inputs without a NIfTI source (DICOM series read with ``ITKReader``, NRRD, ...) are written as MONAI
does, with millimetre units. Integer output dtypes are rounded before the cast, so a label of 2.9999999 after an
interpolation is 3, not 2.

Use it through ``SaveImaged(..., writer="attnseg_monai.io.nifti.SourceGeometryNibabelWriter")``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import DtypeLike, PathLike
from monai.data import ImageWriter, NibabelWriter
from monai.data.utils import to_affine_nd
from monai.utils import convert_data_type

__all__ = ["NIFTI_GEOMETRY_KEYS", "SourceGeometryNibabelWriter", "source_nifti_header", "squeeze_channel", "to_numpy"]

#: the NIfTI-1 header fields that define the qform, the sform and the units; MONAI's NibabelReader puts them
#: into the image metadata (``meta_dict``) and every transform keeps them
NIFTI_GEOMETRY_KEYS = (
    "dim",
    "pixdim",
    "qform_code",
    "sform_code",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
    "xyzt_units",
)


def squeeze_channel(data: Any, channel_dim: int | None, squeeze: bool = True) -> Any:
    """Data already moved to channel-last by a MONAI writer, without its channel axis when that axis has size 1.

    MONAI's writers squeeze *every* trailing axis of size 1 (``squeeze_end_dims``): a volume one slice thick,
    ``(x, y, 1)``, is written as a 2D image and a 1x1 image fails. Only the channel axis is removed here, so the
    written file has the input's spatial dimensions.
    """
    if squeeze and data.ndim > 2 and data.shape[-1] == 1:  # MONAI adds a channel axis when channel_dim is None
        return data[..., 0]
    return data


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (bfloat16 too, which numpy lacks), array or sequence as a numpy array on the CPU."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return (value.float() if value.dtype == torch.bfloat16 else value).cpu().numpy()
    return np.asarray(convert_data_type(value, np.ndarray)[0])


def _header_from_file(meta: Mapping) -> nib.Nifti1Header | None:
    name = meta.get("filename_or_obj")
    if not isinstance(name, (str, os.PathLike)) or not str(name).endswith((".nii", ".nii.gz")):
        return None
    if not os.path.isfile(name):
        return None
    try:
        header = nib.load(name).header  # reads the header only; the data stay on disk
    except (OSError, nib.filebasedimages.ImageFileError):
        return None
    if isinstance(header, nib.Nifti1Header):
        return header
    return None


def _header_from_meta(meta: Mapping) -> nib.Nifti1Header | None:
    if any(key not in meta for key in NIFTI_GEOMETRY_KEYS):
        return None
    header = nib.Nifti1Header()
    try:
        for key in NIFTI_GEOMETRY_KEYS:
            header[key] = to_numpy(meta[key]).astype(header[key].dtype).reshape(header[key].shape)
    except (TypeError, ValueError):  # strings (ITK's metadata) or fields of another shape: not usable
        return None
    return header


def source_nifti_header(meta: Mapping | None) -> nib.Nifti1Header | None:
    """The geometry header of the NIfTI file an image was loaded from.

    The file named by ``meta["filename_or_obj"]`` is read first (header only): MONAI's ``NibabelReader``
    replaces an sform whose column norms disagree with ``pixdim`` by the qform when loading
    (:func:`monai.data.utils.correct_nifti_header_if_necessary`), so the header fields in the metadata are not
    always the file's. When the file is not available, the header fields in ``meta`` are used.

    Args:
        meta: the metadata of an image loaded from a NIfTI file (or of a prediction that copied it; values may be
            numpy arrays or tensors, also after collate/decollate).

    Returns:
        a :class:`nibabel.Nifti1Header` with at least the fields of :data:`NIFTI_GEOMETRY_KEYS`, or ``None`` when
        neither the file nor ``meta`` provides a NIfTI header (DICOM series, NRRD, PNG, ...).
    """
    if not meta:
        return None
    return _header_from_file(meta) or _header_from_meta(meta)


class SourceGeometryNibabelWriter(NibabelWriter):
    """A :class:`~monai.data.NibabelWriter` that keeps the source NIfTI's qform/sform codes, matrices and units.

    Writing predictions with the geometry of their input is what CT and MRI segmentation evaluations need
    (e.g. the MSD pancreas task of Oktay et al., "Attention U-Net", MIDL 2018, or the Synapse multi-organ set):
    the mask must overlay the image in every viewer. See the module docstring for what MONAI's writer changes.

    Args:
        output_dtype: dtype written (``np.uint8`` for labels); integer dtypes round float data first.
        atol: largest difference (in mm, per affine entry) between the data's affine and the source affine
            for which the data count as lying on the source grid.
        kwargs: passed to :class:`~monai.data.NibabelWriter`.

    Raises:
        ValueError: if ``atol`` is negative.

    Examples:
        3D, in a bundle's postprocessing after ``Invertd`` (nearest interpolation for labels)::

            SaveImaged(keys="pred", output_dir="out", output_postfix="seg", resample=False, output_dtype=np.uint8,
                       writer="attnseg_monai.io.nifti.SourceGeometryNibabelWriter")

        2D (a single slice written as a NIfTI; channel-first ``(1, H, W)`` data)::

            writer = SourceGeometryNibabelWriter(output_dtype=np.uint8)
            writer.set_data_array(mask_2d, channel_dim=0)
            writer.set_metadata(mask_2d.meta, resample=False)
            writer.write("mask.nii.gz")
    """

    def __init__(self, output_dtype: DtypeLike = np.float32, atol: float = 1e-3, **kwargs: Any) -> None:
        if not atol >= 0:
            raise ValueError(f"atol must be >= 0 (mm), got {atol!r}.")
        super().__init__(output_dtype=output_dtype, **kwargs)
        self.atol = float(atol)
        self.source_header: nib.Nifti1Header | None = None
        self.loaded_affine: np.ndarray | None = None

    def set_data_array(
        self, data_array: Any, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs: Any
    ) -> None:
        """As MONAI's, but only a single channel axis is squeezed (:func:`squeeze_channel`): a one-slice volume stays
        3D, like its source."""
        super().set_data_array(data_array, channel_dim=channel_dim, squeeze_end_dims=False, **kwargs)
        self.data_obj = squeeze_channel(self.data_obj, channel_dim, squeeze_end_dims)

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = True, **options: Any) -> None:
        """Remember the source header from ``meta_dict``, then resample as :class:`~monai.data.NibabelWriter` does.

        Args:
            meta_dict: the image metadata (``affine``, ``original_affine``, ``spatial_shape`` and the NIfTI fields).
            resample: resample the data to ``original_affine``/``spatial_shape`` before writing.
            options: ``mode``, ``padding_mode``, ``align_corners``, ``dtype`` for the resampling.
        """
        self.source_header = source_nifti_header(meta_dict)
        loaded = None if not meta_dict else meta_dict.get("original_affine")
        self.loaded_affine = None if loaded is None else to_affine_nd(r=3, affine=to_numpy(loaded).astype(np.float64))
        if resample:
            super().set_metadata(meta_dict, resample=True, **options)
            return
        # nothing to resample: MONAI's writer still runs an identity resampling, which fails on 2D images (PNG inputs
        # written as NIfTI); keep the data and take the affine as it is
        _, affine, _ = self.get_meta_info(meta_dict)
        if self.output_dtype is None and self.data_obj is not None and hasattr(self.data_obj, "dtype"):
            self.output_dtype = self.data_obj.dtype
        self.affine = None if affine is None else to_numpy(affine).astype(np.float64)

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        """Write ``self.data_obj`` to ``filename`` with the source geometry (see the class docstring).

        Args:
            filename: the ``.nii`` or ``.nii.gz`` path.
            verbose: log the file name.
            obj_kwargs: ``header``, ``extra``, ``file_map`` for :class:`nibabel.Nifti1Image`.
        """
        ImageWriter.write(self, filename, verbose=verbose)
        data = self.data_obj
        if self.output_dtype is not None and np.issubdtype(np.dtype(self.output_dtype), np.integer):
            array = convert_data_type(data, np.ndarray)[0]
            if np.issubdtype(array.dtype, np.floating):
                data = np.rint(array)
        affine = np.eye(4) if self.affine is None else convert_data_type(self.affine, np.ndarray)[0]
        affine = to_affine_nd(r=3, affine=affine)
        self.data_obj = self.create_backend_obj(data, affine=affine, dtype=self.output_dtype, **obj_kwargs)
        self._set_geometry(self.data_obj, affine)
        nib.save(self.data_obj, filename)

    def _set_geometry(self, image: nib.Nifti1Image, affine: np.ndarray) -> None:
        source = self.source_header
        if source is None:  # not from a NIfTI file: MONAI's behaviour, with millimetres
            image.set_sform(affine, code=1)
            image.set_qform(affine, code=1)
            image.header.set_xyzt_units(xyz="mm")
            return
        qcode, scode = int(source["qform_code"]), int(source["sform_code"])
        shape = tuple(int(s) for s in image.shape[:3])
        source_shape = tuple(int(s) for s in source["dim"][1 : 1 + len(shape)])
        references = [source.get_best_affine()] + ([] if self.loaded_affine is None else [self.loaded_affine])
        on_source_grid = shape == source_shape and any(np.allclose(affine, r, atol=self.atol) for r in references)
        if on_source_grid:
            # the source's own matrices, bit for bit: srow_* for the sform, quaternion + qfac + pixdim for the qform
            image.set_sform(source.get_sform(), code=scode)
            image.set_qform(source.get_qform(), code=qcode)
            header = image.header
            for key in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z"):
                header[key] = source[key]
            header["pixdim"][:4] = source["pixdim"][:4]
            image.set_sform(None, code=scode)  # re-sync the image affine with the header's best affine
        else:  # another grid in the same coordinate system: keep the codes, write the new affine
            scode_out = scode or qcode or 1
            image.set_sform(affine, code=scode_out)
            image.set_qform(affine, code=qcode or scode_out)
        image.header["xyzt_units"] = source["xyzt_units"]
