"""The writers of every output kind, shared by the bundles' ``SaveImaged`` and by ``attnseg infer``.

One writer per output kind and ending:

| output | ending | writer |
|---|---|---|
| labels | ``.png`` | :class:`PNGLabelWriter` (MONAI's ``PILWriter`` + a range check and fixed PNG settings) |
| labels | ``.tif`` / ``.tiff`` | :class:`TiffLabelWriter` (tifffile, zlib) |
| labels, probabilities, attention (3D) | ``.nii`` / ``.nii.gz`` | :class:`~.nifti.SourceGeometryNibabelWriter` |
| labels | ``.mha`` / ``.nrrd`` | MONAI's ``ITKWriter`` (origin, spacing, direction) |
| probabilities (2D) | ``.tif`` | :func:`write_probabilities` (float32, channels first) |
| attention (2D) | ``.png`` | :func:`write_attention` (8-bit) |
| entropy, mutual information | ``.tif`` (2D) / ``.nii.gz`` (3D) | :func:`write_map` (float32) |
| overlay, slide preview | ``.png`` | :func:`write_overlay` (RGB contours over the image) |
| whole-slide labels | ``.tif`` | :class:`TiledTiffStream` (tiled, zlib, streamed row by row) |

Label files are written by a MONAI ``SaveImage``: the bundle's own, as configured in its ``inference.json``
(``"writer": "attnseg_monai.io.writers.PNGLabelWriter"``), or :func:`label_saver` when ``attnseg infer
--output_ext`` asks for another ending. ``python -m monai.bundle run`` lets the ``SaveImage`` name the file;
``attnseg infer`` passes a temporary name and renames it after the case is complete, so both paths write the same
bytes.

Arrays arrive in MONAI's layout: 2D images indexed (x, y) as MONAI's ``PILReader`` loads them, volumes (x, y, z)
with the affine of the input in ``meta["affine"]``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import ITKWriter, PILWriter
from monai.data.image_writer import ImageWriter
from monai.transforms import SaveImage

from .nifti import SourceGeometryNibabelWriter, squeeze_channel, to_numpy
from .suffixes import output_ending

__all__ = [
    "TiledTiffStream",
    "LABEL_EXTENSIONS",
    "LABEL_WRITERS",
    "PNGLabelWriter",
    "TiffLabelWriter",
    "label_saver",
    "make_overlay",
    "output_ending",
    "write_attention",
    "write_map",
    "write_overlay",
    "write_probabilities",
]

_DONE = object()

#: PNG settings of every PNG written (the same pixels give the same bytes with the same zlib)
PNG_COMPRESS_LEVEL = 6


def check_label_range(array: np.ndarray, dtype: Any) -> np.ndarray:
    """``array`` rounded (floats) and cast to the integer ``dtype``, or a ``ValueError`` if a value does not fit
    (MONAI's writers would wrap it silently: instance 256 written as 0 into uint8)."""
    if dtype is None:
        return array
    target = np.dtype(dtype)
    if not np.issubdtype(target, np.integer):
        return array.astype(target, copy=False)
    if array.size:
        lo, hi = float(np.min(array)), float(np.max(array))
        info = np.iinfo(target)
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"label values {lo:g}..{hi:g} do not fit {target.name}; choose a wider output dtype (e.g. uint32)."
            )
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array)
    return array.astype(target, copy=False)


class PNGLabelWriter(PILWriter):
    """MONAI's :class:`~monai.data.PILWriter` for label maps: values are checked against ``output_dtype`` (an error
    instead of MONAI's silent wrap-around), floats are rounded, and the PNG is encoded with fixed settings.

    Use it as ``SaveImaged(..., writer="attnseg_monai.io.writers.PNGLabelWriter")``. ``scale`` (``255`` writes
    0/1 masks as 0/255) is applied as in MONAI, before the check.
    """

    def set_data_array(
        self, data_array: Any, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs: Any
    ) -> None:
        """As MONAI's, but only a single channel axis is squeezed (MONAI squeezes every trailing axis of size 1, which
        fails on a 1x1 image and drops the last row axis of a one-pixel-wide image). A label map is 2D: a leading axis
        of size 1 is its channel even when ``SaveImage`` took the metadata's spatial shape to mean there is none."""
        if channel_dim is None and len(data_array.shape) == 3 and data_array.shape[0] == 1:
            channel_dim = 0
        super().set_data_array(data_array, channel_dim=channel_dim, squeeze_end_dims=False, **kwargs)
        self.data_obj = squeeze_channel(self.data_obj, channel_dim, squeeze_end_dims)

    def write(self, filename: Any, verbose: bool = False, **kwargs: Any) -> None:
        ImageWriter.write(self, filename, verbose=verbose)
        data = to_numpy(self.data_obj)
        if self.scale:
            data = np.clip(data, 0.0, 1.0) * float(self.scale)
        dtype = self.output_dtype
        if dtype is None and data.dtype not in (np.uint8, np.uint16):
            dtype = np.uint16 if data.size and float(data.max()) > 255 else np.uint8
        data = check_label_range(data, dtype)
        image = self.create_backend_obj(
            data, dtype=None, scale=None, reverse_indexing=kwargs.pop("reverse_indexing", True), **kwargs
        )
        image.save(filename, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
        self.data_obj = image


class TiffLabelWriter(ImageWriter):
    """Label maps as zlib-compressed TIFF (tifffile): 2D ``(x, y)`` -> rows x columns, 3D ``(x, y, z)`` -> one
    page per ``z``. Values are checked against ``output_dtype`` as by :class:`PNGLabelWriter`."""

    output_dtype: Any

    def __init__(self, output_dtype: Any = np.uint8, scale: int | None = None, **kwargs: Any) -> None:
        super().__init__(output_dtype=output_dtype, scale=scale, **kwargs)

    def set_data_array(
        self, data_array: Any, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs: Any
    ) -> None:
        data = to_numpy(data_array)
        if channel_dim is not None and data.ndim > 2 and data.shape[channel_dim] == 1:
            data = np.squeeze(data, axis=channel_dim)
        self.data_obj = data

    def set_metadata(self, meta_dict: Mapping | None = None, **options: Any) -> None:
        return None

    def write(self, filename: Any, verbose: bool = False, **kwargs: Any) -> None:
        import tifffile

        super().write(filename, verbose=verbose)
        data = to_numpy(self.data_obj)
        if getattr(self, "scale", None):
            data = np.clip(data, 0.0, 1.0) * float(self.scale)
        data = check_label_range(data, self.output_dtype)
        pages = data.T if data.ndim == 2 else np.transpose(data, (2, 1, 0))
        tifffile.imwrite(filename, np.ascontiguousarray(pages), compression="zlib")


#: the label writer of each ending (lossless formats only)
LABEL_WRITERS: dict[str, type] = {
    ".png": PNGLabelWriter,
    ".tif": TiffLabelWriter,
    ".tiff": TiffLabelWriter,
    ".nii": SourceGeometryNibabelWriter,
    ".nii.gz": SourceGeometryNibabelWriter,
    ".mha": ITKWriter,
    ".nrrd": ITKWriter,
}
#: endings a label output may have
LABEL_EXTENSIONS: tuple[str, ...] = tuple(LABEL_WRITERS)


def label_saver(ext: str, postfix: str, output_dtype: Any = np.uint8, scale: int | None = None) -> SaveImage:
    """A ``SaveImage`` writing labels as ``<name>_<postfix><ext>`` with the writer of :data:`LABEL_WRITERS` (what
    ``attnseg infer --output_ext`` uses in place of a bundle's own ``SaveImaged``).

    Raises:
        ValueError: for an ending that is not a lossless label format.
    """
    ext = output_ending(ext)
    if ext not in LABEL_WRITERS:
        raise ValueError(f"output_ext must be one of {', '.join(LABEL_EXTENSIONS)}, got {ext!r}.")
    return SaveImage(
        output_dir=".",
        output_postfix=postfix,
        output_ext=ext,
        output_dtype=output_dtype,
        scale=scale,
        resample=False,
        separate_folder=False,
        print_log=False,
        writer=LABEL_WRITERS[ext],
    )


def write_probabilities(path: str | os.PathLike, probs: Any, meta: Mapping[str, Any]) -> Path:
    """Class probabilities ``(C, *spatial)``: float32 TIFF ``(C, H, W)`` for 2D, 4D NIfTI ``(x, y, z, C)`` in the
    input's geometry for 3D (:class:`SourceGeometryNibabelWriter`). The ending of ``path`` must fit the data.

    Raises:
        ValueError: for an ending that does not fit the data.
    """
    p = Path(path)
    arr = to_numpy(probs).astype(np.float32, copy=False)
    ext = output_ending(p.name)
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
        _write_nifti(p, arr, meta, channel_dim=0)
    else:
        raise ValueError(f"probabilities of shape {arr.shape} cannot be written as {ext!r} (2D: .tif, 3D: .nii.gz).")
    return p


def _write_nifti(path: Path, array: np.ndarray, meta: Mapping[str, Any], channel_dim: int | None) -> None:
    writer = SourceGeometryNibabelWriter(output_dtype=np.float32)
    writer.set_data_array(torch.as_tensor(array), channel_dim=channel_dim)
    writer.set_metadata(dict(meta), resample=False)
    writer.write(str(path))


def write_map(path: str | os.PathLike, values: Any, meta: Mapping[str, Any]) -> Path:
    """A per-pixel/voxel float map (``(*spatial)`` or ``(1, *spatial)``: entropy, mutual information) in the input's
    geometry: float32 TIFF for 2D, float32 NIfTI (:class:`SourceGeometryNibabelWriter`) for 3D.

    Raises:
        ValueError: for an ending that does not fit the data.
    """
    p = Path(path)
    arr = _spatial(to_numpy(values)).astype(np.float32, copy=False)
    ext = output_ending(p.name)
    if arr.ndim == 2 and ext in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(p, np.ascontiguousarray(arr.T), compression="zlib", photometric="minisblack")
    elif arr.ndim == 3 and ext in (".nii", ".nii.gz"):
        _write_nifti(p, arr, meta, channel_dim=None)
    else:
        raise ValueError(f"a map of shape {arr.shape} cannot be written as {ext!r} (2D: .tif, 3D: .nii.gz).")
    return p


def _spatial(array: np.ndarray) -> np.ndarray:
    return array[0] if array.ndim >= 3 and array.shape[0] == 1 else array


def write_attention(path: str | os.PathLike, attention: Any, meta: Mapping[str, Any]) -> Path:
    """One attention map (``(*spatial)`` or ``(1, *spatial)``, values in [0, 1]): 8-bit PNG (0..255) for 2D,
    float32 NIfTI in the input's geometry for 3D.

    Raises:
        ValueError: for an ending that does not fit the data.
    """
    from .images import encode_png

    p = Path(path)
    arr = _spatial(to_numpy(attention)).astype(np.float32, copy=False)
    ext = output_ending(p.name)
    if arr.ndim == 2 and ext == ".png":
        p.write_bytes(encode_png(np.ascontiguousarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8).T)))
    elif arr.ndim == 3 and ext in (".nii", ".nii.gz"):
        _write_nifti(p, arr, meta, channel_dim=None)
    else:
        raise ValueError(f"attention map of shape {arr.shape} cannot be written as {ext!r} (2D: .png, 3D: .nii.gz).")
    return p


class TiledTiffStream:
    """Writes one tiled, zlib-compressed label TIFF of a whole slide from tiles handed over in row-major order (a
    writer thread consumes the queue, so memory holds at most 256 tiles); :meth:`abort` drops a partial file."""

    def __init__(
        self, path: Path, shape: tuple[int, int], dtype: Any, tile: int, mpp: tuple[float, float] | None
    ) -> None:
        self.path = path
        self.queue: queue.Queue = queue.Queue(maxsize=256)
        self.error: BaseException | None = None
        self.kwargs: dict[str, Any] = {
            "shape": shape,
            "dtype": np.dtype(dtype),
            "tile": (tile, tile),
            "compression": "zlib",
            "photometric": "minisblack",
            "metadata": None,
        }
        if mpp:
            self.kwargs.update(resolution=(1e4 / mpp[1], 1e4 / mpp[0]), resolutionunit="CENTIMETER")
        self.bigtiff = shape[0] * shape[1] * np.dtype(dtype).itemsize > 2**31
        self.thread = threading.Thread(target=self._run, name=f"tiff-writer-{path.name}", daemon=True)
        self.thread.start()

    def _tiles(self):
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            yield item

    def _run(self) -> None:
        import tifffile

        try:
            with tifffile.TiffWriter(self.path, bigtiff=self.bigtiff) as tw:
                tw.write(self._tiles(), **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
            while True:  # unblock the producer
                try:
                    if self.queue.get_nowait() is _DONE:
                        break
                except queue.Empty:
                    break

    def put(self, tile: np.ndarray) -> None:
        while True:
            if self.error is not None:
                raise RuntimeError(f"writing {self.path.name} failed: {self.error}") from self.error
            try:
                self.queue.put(tile, timeout=0.5)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    raise RuntimeError(f"writer of {self.path.name} stopped") from self.error

    def close(self) -> None:
        self.queue.put(_DONE)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"writing {self.path.name} failed: {self.error}") from self.error

    def abort(self) -> None:
        try:
            self.queue.put(_DONE, timeout=1.0)
        except queue.Full:
            pass
        self.thread.join(timeout=30)


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

    img = to_numpy(image)
    lab = _spatial(to_numpy(labels))
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
    from .images import encode_png

    p = Path(path)
    p.write_bytes(encode_png(make_overlay(image, labels)))
    return p
