"""Writers for prediction outputs, in the input's geometry, always through a temporary file.

Arrays arrive in MONAI's layout: 2D images indexed (x, y) as MONAI's ``PILReader`` loads them, volumes (x, y, z)
with the affine of the input in ``meta["affine"]`` (RAS, as MONAI's readers give it). The writers put them back:

| ending | written with | geometry kept |
|---|---|---|
| ``.png`` | Pillow (8/16-bit grey) | width x height and orientation of the input |
| ``.tif`` / ``.tiff`` | tifffile (zlib) | width x height (2D), slices (3D) |
| ``.nii`` / ``.nii.gz`` | nibabel | the input NIfTI's header (qform, sform, units), else the affine |
| ``.mha`` / ``.nrrd`` | MONAI ``ITKWriter`` | origin, spacing and direction (RAS -> LPS) |

Probability maps go to float32 TIFF (2D, channels first) or 4D NIfTI (3D, channels last); attention maps to 8-bit
PNG (2D) or float32 NIfTI (3D); overlays to RGB PNG.

Every file is first written to a hidden temporary name in the output folder (:func:`temporary_path`), then moved into
place with :func:`os.replace` by the predictor once all outputs of the case are complete.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.fileio import encode_png
from .inputs import sanitize_name

__all__ = [
    "LABEL_EXTENSIONS",
    "TEMP_MARKER",
    "cleanup_temporary",
    "make_overlay",
    "output_path",
    "temporary_path",
    "write_attention",
    "write_label",
    "write_overlay",
    "write_probabilities",
]

#: Endings a label output may have (lossless formats only).
LABEL_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff", ".nii", ".nii.gz", ".mha", ".nrrd")
#: Part of every temporary file name; :func:`cleanup_temporary` removes files carrying it.
TEMP_MARKER = ".attnseg-tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()

_PALETTE = np.array(
    [
        [255, 64, 64],
        [64, 200, 64],
        [64, 128, 255],
        [255, 200, 0],
        [255, 0, 255],
        [0, 220, 220],
        [255, 128, 0],
        [160, 64, 255],
        [128, 255, 128],
        [255, 128, 192],
    ],
    dtype=np.uint8,
)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _ext_of(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def output_path(output_dir: str | os.PathLike, case_id: str, postfix: str, ext: str) -> Path:
    """``<output_dir>/<case_id>_<postfix><ext>``, with both names sanitised and the result checked to stay inside.

    Raises:
        ValueError: if the ending is not a plain ending or the path would leave ``output_dir``.
    """
    root = Path(output_dir).absolute()
    if not ext.startswith(".") or "/" in ext or "\\" in ext or ".." in ext:
        raise ValueError(f"output ending must look like '.png' or '.nii.gz', got {ext!r}.")
    stem = sanitize_name(case_id)
    name = f"{stem}_{sanitize_name(postfix, fallback='out')}{ext}" if postfix else f"{stem}{ext}"
    target = root / name
    if target.parent != root or Path(os.path.normpath(target)).parent != root:
        raise ValueError(f"output {name!r} would leave the output folder {root}.")
    return target


def temporary_path(final: str | os.PathLike, rank: int = 0) -> Path:
    """A new, empty, hidden file next to ``final`` whose name ends with ``final``'s ending (writers pick the format
    from it) and carries :data:`TEMP_MARKER` and the rank (so a process only ever cleans up its own)."""
    target = Path(final)
    ext = _ext_of(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.r{rank}-", suffix=f"{TEMP_MARKER}{ext}", dir=target.parent)
    os.close(fd)
    os.chmod(name, _FILE_MODE)  # mkstemp makes owner-only files; outputs get the usual permissions
    return Path(name)


def cleanup_temporary(output_dir: str | os.PathLike, rank: int | None = None) -> list[Path]:
    """Remove temporary files left by interrupted runs (only rank ``rank``'s, or every rank's when ``None``)."""
    root = Path(output_dir)
    pattern = f".*.r{rank}-*{TEMP_MARKER}*" if rank is not None else f".*{TEMP_MARKER}*"
    removed = []
    for name in glob.glob(str(root / pattern)):
        with contextlib.suppress(OSError):
            os.unlink(name)
            removed.append(Path(name))
    return removed


def _spatial(array: np.ndarray, shape: Any = None) -> np.ndarray:
    """Drop a leading channel axis of size 1, unless the array already has the input's spatial ``shape`` (a volume
    one voxel thick along its first axis, ``(1, Y, Z)``, keeps that axis)."""
    if shape is not None and tuple(array.shape) == tuple(int(s) for s in np.asarray(shape).reshape(-1)):
        return array
    if array.ndim >= 3 and array.shape[0] == 1:
        return array[0]
    return array


def _cast_labels(array: np.ndarray, dtype: Any) -> np.ndarray:
    if dtype is None:
        return array
    target = np.dtype(dtype)
    if np.issubdtype(target, np.integer) and array.size:
        lo, hi = float(array.min()), float(array.max())
        info = np.iinfo(target)
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"label values {lo:g}..{hi:g} do not fit {target.name}; choose a wider output dtype (e.g. uint32)."
            )
        if np.issubdtype(array.dtype, np.floating):
            array = np.rint(array)
    return array.astype(target, copy=False)


def _affine(meta: Mapping[str, Any]) -> np.ndarray:
    aff = meta.get("affine")
    if aff is None:
        return np.eye(4)
    aff = _to_numpy(aff).astype(np.float64)
    if aff.shape == (3, 3):  # 2D affine (x, y): embed into 3D
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = aff[:2, :2], aff[:2, 2]
        return full
    return aff


def _source(meta: Mapping[str, Any]) -> str:
    src = meta.get("filename_or_obj", "")
    return str(src[0] if isinstance(src, (list, tuple)) and src else src)


def _write_nifti(path: Path, array: np.ndarray, meta: Mapping[str, Any], dtype: Any) -> None:
    import nibabel

    src = _source(meta)
    header = None
    if src.lower().endswith((".nii", ".nii.gz")) and Path(src).is_file():
        try:
            ref = nibabel.load(src)
            if tuple(ref.shape[: array.ndim]) == tuple(array.shape):
                header = ref.header.copy()
        except Exception:  # noqa: BLE001 - fall back to the affine from the metadata
            header = None
    if header is not None:
        img = nibabel.Nifti1Image(array, None, header=header)
    else:
        img = nibabel.Nifti1Image(array, _affine(meta))
        img.header.set_xyzt_units("mm")
    img.header.set_data_dtype(array.dtype if dtype is None else np.dtype(dtype))
    img.header.set_slope_inter(None, None)
    nibabel.save(img, str(path))


def _write_itk(path: Path, array: np.ndarray, meta: Mapping[str, Any]) -> None:
    from monai.data import ITKWriter

    writer = ITKWriter(output_dtype=array.dtype)
    writer.set_data_array(torch.as_tensor(array[None]), channel_dim=0)
    writer.set_metadata({"affine": torch.as_tensor(_affine(meta)[: array.ndim + 1, : array.ndim + 1])}, resample=False)
    writer.write(str(path), verbose=False)


def write_label(path: str | os.PathLike, array: Any, meta: Mapping[str, Any], dtype: Any = None) -> Path:
    """Write a label map (``(*spatial)`` or ``(1, *spatial)``, MONAI layout) to ``path`` in the input's geometry.

    Args:
        path: destination; its ending picks the format (:data:`LABEL_EXTENSIONS`).
        array: integer labels (floats are rounded when ``dtype`` is an integer type).
        meta: the input's metadata (``affine``, ``filename_or_obj``).
        dtype: output type (``None`` keeps the array's).

    Raises:
        ValueError: for an unsupported ending, a 3D array into PNG, or values that do not fit ``dtype``.
    """
    p = Path(path)
    ext = _ext_of(p)
    if ext.endswith(TEMP_MARKER):
        ext = ext[: -len(TEMP_MARKER)]
    arr = _cast_labels(_spatial(_to_numpy(array), meta.get("spatial_shape")), dtype)
    if ext == ".png":
        if arr.ndim != 2:
            raise ValueError(f"PNG outputs must be 2D, got shape {arr.shape}; use .nii.gz for volumes.")
        if arr.dtype not in (np.uint8, np.uint16):
            arr = _cast_labels(arr, np.uint16 if arr.size and arr.max() > 255 else np.uint8)
        p.write_bytes(encode_png(np.ascontiguousarray(arr.T)))
    elif ext in (".tif", ".tiff"):
        import tifffile

        data = arr.T if arr.ndim == 2 else np.transpose(arr, (2, 1, 0))
        tifffile.imwrite(p, np.ascontiguousarray(data), compression="zlib")
    elif ext in (".nii", ".nii.gz"):
        _write_nifti(p, arr, meta, dtype)
    elif ext in (".mha", ".nrrd"):
        _write_itk(p, arr, meta)
    else:
        raise ValueError(f"cannot write labels as {ext!r}; choose one of {', '.join(LABEL_EXTENSIONS)}.")
    return p


def write_probabilities(path: str | os.PathLike, probs: Any, meta: Mapping[str, Any]) -> Path:
    """Write class probabilities ``(C, *spatial)``: float32 TIFF ``(C, H, W)`` for 2D, 4D NIfTI ``(x, y, z, C)``
    with the input's affine for 3D (the ending of ``path`` must match: ``.tif`` or ``.nii.gz``).

    Raises:
        ValueError: for an ending that does not fit the data.
    """
    p = Path(path)
    arr = _to_numpy(probs).astype(np.float32, copy=False)
    ext = _ext_of(p)
    if arr.ndim == 3 and ext in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(
            p,
            np.ascontiguousarray(np.transpose(arr, (0, 2, 1))),
            compression="zlib",
            photometric="minisblack",
            metadata={"axes": "CYX"},
        )
    elif arr.ndim == 4 and ext in (".nii", ".nii.gz"):
        import nibabel

        img = nibabel.Nifti1Image(np.ascontiguousarray(np.moveaxis(arr, 0, -1)), _affine(meta))
        img.header.set_xyzt_units("mm")
        nibabel.save(img, str(p))
    else:
        raise ValueError(f"probabilities of shape {arr.shape} cannot be written as {ext!r} (2D: .tif, 3D: .nii.gz).")
    return p


def write_attention(path: str | os.PathLike, attention: Any, meta: Mapping[str, Any]) -> Path:
    """Write one attention map (``(*spatial)`` or ``(1, *spatial)``, values in [0, 1]): 8-bit PNG (0..255) for 2D,
    float32 NIfTI for 3D.

    Raises:
        ValueError: for an ending that does not fit the data.
    """
    p = Path(path)
    arr = _spatial(_to_numpy(attention)).astype(np.float32, copy=False)
    ext = _ext_of(p)
    if arr.ndim == 2 and ext == ".png":
        p.write_bytes(encode_png(np.ascontiguousarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8).T)))
    elif arr.ndim == 3 and ext in (".nii", ".nii.gz"):
        _write_nifti(p, arr, meta, np.float32)
    else:
        raise ValueError(f"attention map of shape {arr.shape} cannot be written as {ext!r} (2D: .png, 3D: .nii.gz).")
    return p


def _display_rgb(image: np.ndarray) -> np.ndarray:
    """(C, x, y) intensities -> (y, x, 3) uint8 for display (8-bit RGB kept, anything else scaled 1st-99th pct)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[None]
    chans = img[:3] if img.shape[0] >= 3 else np.repeat(img[:1], 3, axis=0)
    lo, hi = float(chans.min()), float(chans.max())
    if not (lo >= 0 and hi <= 255 and hi > 1.0):
        lo, hi = (float(v) for v in np.percentile(chans, [1, 99]))
        chans = (chans - lo) / max(hi - lo, 1e-6) * 255.0
    return np.clip(np.transpose(chans, (2, 1, 0)), 0, 255).astype(np.uint8)


def make_overlay(image: Any, labels: Any, alpha: float = 0.25) -> np.ndarray:
    """RGB review image: the input with each label's contour drawn in its colour and its area lightly tinted.

    Args:
        image: the input, ``(C, *spatial)`` in MONAI layout (2D (x, y) or 3D (x, y, z)).
        labels: integer labels, ``(*spatial)`` or ``(1, *spatial)``.
        alpha: tint strength inside labelled areas.

    Returns:
        ``(H, W, 3)`` uint8. For volumes, the axial slice (last axis) with the most labelled voxels (the middle one if
        none), shown with anterior up.

    Raises:
        ValueError: when the spatial shapes of image and labels differ.
    """
    from skimage.segmentation import find_boundaries

    img = _to_numpy(image)
    lab = _spatial(_to_numpy(labels))
    if img.ndim == lab.ndim:
        img = img[None]
    if tuple(img.shape[1:]) != tuple(lab.shape):
        raise ValueError(f"image {img.shape[1:]} and labels {lab.shape} must have the same spatial shape.")
    flip = False
    if lab.ndim == 3:
        counts = (lab > 0).reshape(-1, lab.shape[-1]).sum(0)
        k = int(np.argmax(counts)) if counts.max() > 0 else lab.shape[-1] // 2
        img, lab, flip = img[..., k], lab[..., k], True
    rgb = _display_rgb(img)
    lab_yx = np.ascontiguousarray(lab.T.astype(np.int64))
    colours = _PALETTE[(np.maximum(lab_yx, 1) - 1) % len(_PALETTE)]
    inside = lab_yx > 0
    out = rgb.astype(np.float32)
    out[inside] = (1 - alpha) * out[inside] + alpha * colours[inside]
    edges = find_boundaries(lab_yx, mode="inner") & inside
    out[edges] = colours[edges]
    out = np.clip(out, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out[::-1] if flip else out)


def write_overlay(path: str | os.PathLike, image: Any, labels: Any) -> Path:
    """Write :func:`make_overlay` as a PNG."""
    p = Path(path)
    p.write_bytes(encode_png(make_overlay(image, labels)))
    return p
