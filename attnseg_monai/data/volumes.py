"""Check 3D image/label pairs (CT volumes) before training, and report every problem at once.

The volume counterpart of :func:`~attnseg_monai.data.validation.validate_pairs`. Per item: both paths given and
present, files not empty, headers readable (NIfTI through nibabel; NRRD through pynrrd when installed, else ITK;
MetaImage through ITK; TransUNet's ``.npz`` / ``.npy.h5`` through numpy / h5py, where image and label are the
``image`` and ``label`` arrays of one file), image and label of the same spatial shape and the same geometry
(spacing, orientation, origin), and labels that decode, hold whole numbers within an allowed set, and are not all
background. Headers are read without decoding the voxels (a ``.nii.gz`` header is the first few hundred bytes of
the stream); labels are decoded only when their values are checked, images only with ``decode_images=True``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np

from ..io.suffixes import (
    ITK_EXTENSIONS,
    NIBABEL_EXTENSIONS,
    NRRD_EXTENSIONS,
    TRANSUNET_EXTENSIONS,
    TRANSUNET_SLICE_EXTENSIONS,
    TRANSUNET_VOLUME_EXTENSIONS,
    has_ending,
)
from .errors import DatasetError, read_checked
from .validation import label_value_problems

__all__ = ["VolumeHeader", "VolumeInfo", "read_volume", "read_volume_header", "validate_volume_pairs"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class VolumeHeader:
    """What a volume file's header says.

    ``shape`` is in the axis order MONAI's loaders give (NIfTI/ITK: ``(I, J, K[, C])``; TransUNet arrays reversed,
    as :class:`~attnseg_monai.data.ct_layouts.TransUNetNpzReader` loads them); ``affine`` is the voxel-to-world
    matrix (RAS, mm), ``None`` for formats without geometry (whose ``spacing`` is then 1 mm).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray | None
    dtype: str
    format: str

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The first three axes (two for a 2D slice); trailing channel or time axes are dropped."""
        return self.shape[: min(3, len(self.shape))]


@dataclass(frozen=True)
class VolumeInfo:
    """What :func:`validate_volume_pairs` learned about one valid pair."""

    image: str
    label: str
    shape: tuple[int, ...]
    """spatial shape of the image (I, J, K)."""
    spacing: tuple[float, ...]
    """voxel size in mm (1.0 where the format keeps none)."""
    label_values: tuple[int, ...] | None
    """sorted label values, when labels were decoded."""


def _default_key(path: Path, key: str | None) -> str:
    return key if key is not None else "image"


def _nrrd_module() -> Any | None:
    try:
        import nrrd  # pynrrd: reads a header in milliseconds, where ITK's first use loads for seconds
    except ImportError:
        return None
    return nrrd


def _nrrd_header(nrrd: Any, path: Path) -> VolumeHeader:
    header = nrrd.read_header(str(path))
    sizes = tuple(int(n) for n in header["sizes"])
    directions = header.get("space directions")
    space = str(header.get("space", "")).lower()
    spatial: list[int] = []
    if directions is not None:
        spatial = [i for i, row in enumerate(directions) if row is not None and np.all(np.isfinite(row))]
    affine = None
    spacing: tuple[float, ...] = tuple(float(s) for s in header.get("spacings", [1.0] * len(sizes)))
    if spatial and space in ("left-posterior-superior", "lps", "right-anterior-superior", "ras"):
        matrix = np.asarray([directions[i] for i in spatial], dtype=np.float64).T  # columns: the axes' steps
        dims = matrix.shape[0]
        affine = np.eye(4)
        affine[:dims, : len(spatial)] = matrix
        affine[:dims, 3] = np.asarray(header.get("space origin", np.zeros(dims)), dtype=np.float64)
        if space in ("left-posterior-superior", "lps"):
            affine = _LPS_TO_RAS @ affine
        spacing = tuple(float(n) for n in np.linalg.norm(matrix, axis=0))
    # spatial axes first, as MONAI loads them; a leading channel axis moves last
    order = spatial + [i for i in range(len(sizes)) if i not in spatial] if spatial else list(range(len(sizes)))
    return VolumeHeader(tuple(sizes[i] for i in order), spacing, affine, str(header.get("type", "")), "nrrd")


def _itk_reader(path: Path) -> Any:
    import itk

    reader = itk.ImageFileReader.New(FileName=str(path))
    reader.UpdateOutputInformation()
    return reader


def read_volume_header(path: str | Path, key: str | None = None) -> VolumeHeader:
    """The header of a volume file without decoding its voxels.

    Args:
        path: NIfTI (``.nii``, ``.nii.gz``), NRRD, MetaImage, or a TransUNet ``.npz`` / ``.h5`` file.
        key: array name inside ``.npz`` / ``.h5`` files (default ``"image"``); ignored for other formats.

    Raises:
        OSError: if the file is missing, unreadable, corrupt, of an unsupported format, or lacks the array ``key``.
    """
    p = Path(path)
    try:
        if has_ending(p, NIBABEL_EXTENSIONS):
            image = nib.load(str(p))
            zooms = tuple(float(z) for z in image.header.get_zooms())
            return VolumeHeader(
                tuple(int(n) for n in image.shape),
                zooms[: min(3, len(zooms))],
                np.asarray(image.affine, dtype=np.float64),
                str(image.get_data_dtype()),
                "nifti",
            )
        if has_ending(p, NRRD_EXTENSIONS) and _nrrd_module() is not None:
            return _nrrd_header(_nrrd_module(), p)
        if has_ending(p, ITK_EXTENSIONS):
            out = _itk_reader(p).GetOutput()
            dims = out.GetImageDimension()
            size = tuple(int(n) for n in out.GetLargestPossibleRegion().GetSize())
            spacing = tuple(float(s) for s in out.GetSpacing())
            direction = np.asarray(out.GetDirection(), dtype=np.float64).reshape(dims, dims)
            affine = np.eye(4)
            affine[:dims, :dims] = direction @ np.diag(spacing)
            affine[:dims, 3] = np.asarray(out.GetOrigin(), dtype=np.float64)
            components = int(out.GetNumberOfComponentsPerPixel())
            shape = size + ((components,) if components > 1 else ())
            return VolumeHeader(shape, spacing, _LPS_TO_RAS @ affine, "itk", "itk")
        if has_ending(p, TRANSUNET_SLICE_EXTENSIONS):
            name = _default_key(p, key)
            with np.load(str(p), allow_pickle=False) as archive:
                if name not in archive.files:
                    raise OSError(f"no array named {name!r} (arrays: {', '.join(archive.files)})")
                array = archive[name]
            return VolumeHeader(tuple(reversed(array.shape)), (1.0,) * array.ndim, None, str(array.dtype), "npz")
        if has_ending(p, TRANSUNET_VOLUME_EXTENSIONS):
            name = _default_key(p, key)
            with h5py.File(str(p), "r") as handle:
                if name not in handle or not isinstance(handle[name], h5py.Dataset):
                    raise OSError(f"no dataset named {name!r} (datasets: {', '.join(handle.keys())})")
                dataset = handle[name]
                shape, dtype = tuple(int(n) for n in dataset.shape), str(dataset.dtype)
            return VolumeHeader(tuple(reversed(shape)), (1.0,) * len(shape), None, dtype, "hdf5")
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - nibabel, ITK and h5py raise many types for bad files
        raise OSError(f"{type(err).__name__}: {err}") from err
    raise OSError(
        f"unsupported volume format {p.name!r}: expected NIfTI (.nii, .nii.gz), NRRD, MetaImage (.mha, .mhd) or a "
        "TransUNet .npz / .h5 file"
    )


def read_volume(path: str | Path, key: str | None = None) -> np.ndarray:
    """Decode a volume file into an array in the axis order of :func:`read_volume_header` (raw stored values:
    NIfTI scaling is applied, so an integer label stays integer when its slope is 1 and intercept 0).

    Raises:
        OSError: if the file cannot be decoded (missing, truncated, corrupt, unsupported).
    """
    p = Path(path)
    try:
        if has_ending(p, NIBABEL_EXTENSIONS):
            return np.asanyarray(nib.load(str(p)).dataobj)
        if has_ending(p, NRRD_EXTENSIONS) and _nrrd_module() is not None:
            nrrd = _nrrd_module()
            array, header = nrrd.read(str(p), index_order="F")
            directions = header.get("space directions")
            if directions is not None:
                spatial = [i for i, row in enumerate(directions) if row is not None and np.all(np.isfinite(row))]
                array = np.transpose(array, spatial + [i for i in range(array.ndim) if i not in spatial])
            return array
        if has_ending(p, ITK_EXTENSIONS):
            import itk

            array = itk.GetArrayFromImage(itk.imread(str(p)))
            image_dims = _itk_reader(p).GetOutput().GetImageDimension()
            spatial = tuple(reversed(range(image_dims)))
            return np.transpose(array, spatial + tuple(range(image_dims, array.ndim)))
        if has_ending(p, TRANSUNET_SLICE_EXTENSIONS):
            name = _default_key(p, key)
            with np.load(str(p), allow_pickle=False) as archive:
                if name not in archive.files:
                    raise OSError(f"no array named {name!r}")
                return np.asarray(archive[name]).T
        if has_ending(p, TRANSUNET_VOLUME_EXTENSIONS):
            name = _default_key(p, key)
            with h5py.File(str(p), "r") as handle:
                if name not in handle:
                    raise OSError(f"no dataset named {name!r}")
                return np.asarray(handle[name][()]).T
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - truncated gzip streams raise EOFError, zlib.error, ...
        raise OSError(f"{type(err).__name__}: {err}") from err
    raise OSError(f"unsupported volume format {p.name!r}")


def _array_key(path: str, role: str) -> str | None:
    return role if Path(path).name.lower().endswith(TRANSUNET_EXTENSIONS) else None


def _header(path: str, role: str, problems: list[tuple[str, str]]) -> VolumeHeader | None:
    return read_checked(
        path,
        role,
        problems,
        lambda p: read_volume_header(p, _array_key(path, role)),
        " (DICOM series: convert to NIfTI first)",
    )


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _geometry_problem(image: VolumeHeader, label: VolumeHeader, image_name: str) -> str | None:
    if image.affine is None or label.affine is None:
        return None
    if np.allclose(image.affine, label.affine, rtol=1e-4, atol=1e-3):
        return None
    return (
        f"label geometry differs from its image {image_name}: spacing {_fmt(label.spacing[:3])} vs "
        f"{_fmt(image.spacing[:3])} mm, origin {_fmt(label.affine[:3, 3])} vs {_fmt(image.affine[:3, 3])} mm "
        "(RAS), or the orientation; resample the label onto its image, or pass check_geometry=False if the "
        "headers only disagree in form"
    )


def validate_volume_pairs(
    items: Iterable[Mapping[str, Any]],
    label_values: Iterable[int] | None = None,
    *,
    allow_empty_labels: bool = False,
    check_labels: bool = True,
    check_geometry: bool = True,
    decode_images: bool = False,
    image_key: str = "image",
    label_key: str = "label",
) -> list[VolumeInfo]:
    """Check every 3D image/label pair; raise one :class:`DatasetError` listing each offending file and problem.

    Args:
        items: datalist items with ``image_key`` and ``label_key`` paths (``read_dataset`` output). For TransUNet
            files both may name the same file: its ``image`` and ``label`` arrays are compared.
        label_values: the allowed label values (``{0, 1, 2}`` for MSD pancreas, ``range(14)`` for BTCV,
            ``range(9)`` for TransUNet's Synapse files); ``None`` allows any whole number.
        allow_empty_labels: accept labels that are all background (0).
        check_labels: decode labels to check their values and emptiness; ``False`` reads headers only.
        check_geometry: require the label's affine (spacing, orientation, origin) to match its image's within
            1e-3 mm + 1e-4 relative.
        decode_images: also decode every image in full (slow; catches truncated ``.nii.gz`` data behind a good
            header).
        image_key: key of the image path.
        label_key: key of the label path.

    Returns:
        one :class:`VolumeInfo` per item, in the input order, when all pass.

    Raises:
        DatasetError: listing every problem found (nothing is raised before all items are checked), or if
            ``items`` is empty.
    """
    allowed = None if label_values is None else {int(v) for v in label_values}
    items = list(items)
    if not items:
        raise DatasetError("no image/label pairs to validate: the datalist is empty")
    problems: list[tuple[str, str]] = []
    infos: list[VolumeInfo] = []
    for index, item in enumerate(items):
        image_path, label_path = item.get(image_key), item.get(label_key)
        if not image_path:
            problems.append((str(label_path or f"item {index}"), f"missing image (no {image_key!r} entry)"))
        if not label_path:
            problems.append((str(image_path or f"item {index}"), f"missing label (no {label_key!r} entry)"))
        if not image_path or not label_path:
            continue
        if isinstance(image_path, (list, tuple)):  # several files of one case: check the first against the label
            image_path = image_path[0]
        image_path, label_path = str(image_path), str(label_path)
        found: list[tuple[str, str]] = []
        image = _header(image_path, "image", found)
        label = _header(label_path, "label", found)
        if image is not None and decode_images:
            try:
                read_volume(image_path, _array_key(image_path, "image"))
            except OSError as err:
                found.append((image_path, f"image file is corrupt ({err})"))
        if label is not None and len(label.shape) > 3 and any(n != 1 for n in label.shape[3:]):
            found.append((label_path, f"label has shape {label.shape}, expected a single-channel 3D volume"))
        if image is not None and label is not None:
            image_name = Path(image_path).name
            if image.spatial_shape != label.spatial_shape:
                found.append(
                    (
                        label_path,
                        f"label shape {label.spatial_shape} differs from its image {image_name} {image.spatial_shape}",
                    )
                )
            elif check_geometry:
                message = _geometry_problem(image, label, image_name)
                if message:
                    found.append((label_path, message))
        values: tuple[int, ...] | None = None
        if label is not None and check_labels:
            try:
                voxels = read_volume(label_path, _array_key(label_path, "label"))
            except OSError as err:
                found.append((label_path, f"label file is corrupt ({err})"))
                voxels = None
            if voxels is not None:
                present = np.unique(voxels)
                if present.dtype.kind == "f" and not np.all(np.isfinite(present) & (present == np.round(present))):
                    odd = present[~(np.isfinite(present) & (present == np.round(present)))][:5]
                    found.append(
                        (
                            label_path,
                            f"label holds non-integer values (e.g. {', '.join(f'{v:g}' for v in odd)}): was it "
                            "resampled with linear interpolation? use nearest-neighbour for labels",
                        )
                    )
                else:
                    values = tuple(int(v) for v in present)
                    found += label_value_problems(label_path, values, allowed, allow_empty_labels, "volumes")
        if found or image is None:
            problems += found
        else:
            infos.append(
                VolumeInfo(image_path, label_path, tuple(image.spatial_shape), tuple(image.spacing[:3]), values)
            )
    DatasetError.raise_if_any(problems, f"{len(items)} image/label pairs")
    return infos
