"""MONAI image readers for TransUNet's preprocessed Synapse files (``.npz`` slices, ``.npy.h5`` volumes).

TransUNet files hold the image and the label of a slice (or volume) in one file, so a datalist item points twice
at the same file and the loader says which array to take: ``TransUNetNpzReader(key="image")`` /
``(key="label")`` for ``.npz`` slices, :class:`TransUNetH5Reader` for ``.npy.h5`` volumes, one ``LoadImaged`` per
key. They return the stored array with its axes reversed by default (``reverse_indexing=True``, as MONAI's PIL and
ITK readers do), so a ``(K, J, I)`` test volume loads as ``(I, J, K)`` like the raw NIfTI and a ``(J, I)`` slice as
``(I, J)``; the files carry no geometry, so the affine is the identity: 1 mm voxels in every direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import h5py
import numpy as np
from monai.config import PathLike
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from .suffixes import TRANSUNET_SLICE_EXTENSIONS, TRANSUNET_VOLUME_EXTENSIONS

__all__ = ["TransUNetH5Reader", "TransUNetNpzReader"]


class _TransUNetImageReader(ImageReader):
    """Shared part of the npz/h5 readers: one named array per file, identity geometry."""

    _suffixes: ClassVar[tuple[str, ...]] = ()
    _format: ClassVar[str] = ""

    def __init__(self, key: str = "image", reverse_indexing: bool = True) -> None:
        super().__init__()
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must name the array to load ('image' or 'label'), got {key!r}.")
        self.key = key
        self.reverse_indexing = bool(reverse_indexing)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every file name ends with one of this reader's endings."""
        return all(str(name).lower().endswith(self._suffixes) for name in ensure_tuple(filename))

    def _load(self, path: str) -> np.ndarray:
        raise NotImplementedError

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> np.ndarray | list[np.ndarray]:
        """Load the ``key`` array of each file.

        Raises:
            ValueError: if a file has no array named ``key``.
            OSError: if a file cannot be opened.
        """
        arrays = [self._load(str(name)) for name in ensure_tuple(data)]
        return arrays if len(arrays) > 1 else arrays[0]

    def get_data(self, img: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, dict]:
        """The array (axes reversed when ``reverse_indexing``) and its metadata: identity affine (1 mm voxels), RAS,
        no channel dimension. Several files are stacked on a new first (channel) axis."""
        arrays = [img] if isinstance(img, np.ndarray) else list(img)
        out = [np.ascontiguousarray(a.T) if self.reverse_indexing else a for a in arrays]
        shapes = {a.shape for a in out}
        if len(shapes) != 1:
            raise ValueError(f"cannot stack arrays of different shapes {sorted(shapes)} as channels.")
        spatial = out[0].shape
        meta: dict[str, Any] = {
            MetaKeys.AFFINE: np.eye(4),
            MetaKeys.ORIGINAL_AFFINE: np.eye(4),
            MetaKeys.SPATIAL_SHAPE: np.asarray(spatial),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if len(out) == 1 else 0,
            "format": self._format,
            "array_key": self.key,
        }
        return (out[0] if len(out) == 1 else np.stack(out, axis=0)), meta

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, reverse_indexing={self.reverse_indexing})"


class TransUNetNpzReader(_TransUNetImageReader):
    """MONAI image reader of TransUNet's ``.npz`` slices: the array ``key`` (``"image"`` or ``"label"``) of the file.

    A slice is stored ``(rows, columns)``; with ``reverse_indexing=True`` (default) it loads as ``(columns, rows)``,
    the order of a raw NIfTI slice (see the module docstring). The affine is the identity: the files keep no
    spacing, so 1 mm is assumed.

    Args:
        key: name of the array to load.
        reverse_indexing: reverse the stored axes (MONAI's convention for PIL and ITK images).

    Raises:
        ValueError: for an empty ``key``.

    Example::

        >>> from monai.transforms import Compose, LoadImaged
        >>> load = Compose([LoadImaged("image", reader=TransUNetNpzReader("image"), ensure_channel_first=True),
        ...                 LoadImaged("label", reader=TransUNetNpzReader("label"), ensure_channel_first=True)])
        >>> sample = load({"image": "case0005_slice000.npz", "label": "case0005_slice000.npz"})  # 2D: (1, 512, 512)

    For 3D test volumes use :class:`TransUNetH5Reader` the same way.
    """

    _suffixes: ClassVar[tuple[str, ...]] = TRANSUNET_SLICE_EXTENSIONS
    _format: ClassVar[str] = "npz"

    def _load(self, path: str) -> np.ndarray:
        with np.load(path, allow_pickle=False) as archive:
            if self.key not in archive.files:
                raise ValueError(f"{path}: no array named {self.key!r} (arrays: {', '.join(archive.files)}).")
            return np.asarray(archive[self.key])


class TransUNetH5Reader(_TransUNetImageReader):
    """MONAI image reader of TransUNet's ``.npy.h5`` test volumes: the dataset ``key`` of the HDF5 file.

    A volume is stored ``(slices, rows, columns)``; with ``reverse_indexing=True`` (default) it loads as
    ``(columns, rows, slices)`` -- the order of the raw NIfTI volume, slices last -- so slice ``k`` of the loaded
    volume equals the ``caseXXXX_slice{k}.npz`` slice loaded by :class:`TransUNetNpzReader`. Identity affine (1 mm).

    Args:
        key: name of the dataset to load.
        reverse_indexing: reverse the stored axes.

    Raises:
        ValueError: for an empty ``key``.

    Example::

        >>> load = LoadImaged("image", reader=TransUNetH5Reader("image"), ensure_channel_first=True)
        >>> load({"image": "test_vol_h5/case0001.npy.h5"})["image"].shape      # 3D: (1, 512, 512, 147)
        >>> LoadImage(reader=TransUNetNpzReader("label"), image_only=True)("case0005_slice000.npz").shape  # 2D
    """

    _suffixes: ClassVar[tuple[str, ...]] = TRANSUNET_VOLUME_EXTENSIONS
    _format: ClassVar[str] = "hdf5"

    def _load(self, path: str) -> np.ndarray:
        with h5py.File(path, "r") as handle:
            if self.key not in handle or not isinstance(handle[self.key], h5py.Dataset):
                names = ", ".join(k for k in handle.keys())
                raise ValueError(f"{path}: no dataset named {self.key!r} (datasets: {names}).")
            return np.asarray(handle[self.key][()])
