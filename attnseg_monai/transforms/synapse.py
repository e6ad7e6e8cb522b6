"""Synapse CT transforms: one loader for every layout of the data set, and random axial slices for 2D training.

- :class:`LoadSynapsed` / :func:`load_synapse`: raw BTCV NIfTI, DICOM series folders and TransUNet's ``.npz`` /
  ``.npy.h5`` files as channel-first ``(1, H, W, D)`` MetaTensors with the Synapse conventions (image in [0, 1]
  after the HU window :data:`HU_WINDOW`, labels 0..8 in :data:`~attnseg_monai.data.SYNAPSE_CLASSES` order);
- :class:`RandAxialSlicesd`: random (optionally class-balanced) axial slices of cached volumes, the samples of a
  slice-wise 2D network such as DANIE (seed 003) trained the TransUNet way.

The datalists these transforms read are made by :mod:`attnseg_monai.data.synapse`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Randomizable
from monai.transforms.traits import MultiSampleTrait

from ..data.ct_labels import btcv_to_synapse8
from ..data.synapse import is_transunet_file
from ..io.dicom import is_dicom_folder
from ..io.transunet import TransUNetH5Reader, TransUNetNpzReader

__all__ = ["HU_WINDOW", "LoadSynapsed", "RandAxialSlicesd", "load_synapse"]

#: TransUNet's CT window in HU, mapped linearly to [0, 1] (values outside are clipped)
HU_WINDOW: tuple[float, float] = (-125.0, 275.0)


@functools.lru_cache(maxsize=16)
def _loader_for(kind: str, role: str) -> LoadImage:
    """One MONAI loader per file kind and array (building one scans MONAI's readers, so they are reused)."""
    readers: dict[str, Any] = {
        "npz": lambda: TransUNetNpzReader(key=role),
        "h5": lambda: TransUNetH5Reader(key=role),
        "nifti": lambda: "NibabelReader",
        "dicom": lambda: "ITKReader",
        "other": lambda: None,
    }
    return LoadImage(reader=readers[kind](), image_only=True, ensure_channel_first=True, dtype=np.float32)


def _loader(name: str, role: str) -> LoadImage:
    if name.endswith(".npz"):
        return _loader_for("npz", role)
    if name.endswith((".h5", ".hdf5")):
        return _loader_for("h5", role)
    if name.endswith((".nii", ".nii.gz")):
        return _loader_for("nifti", role)
    return _loader_for("other", role)


def load_synapse(
    path: str | os.PathLike,
    role: str = "image",
    *,
    hu_window: Sequence[float] | None = HU_WINDOW,
    label_mapping: str = "btcv",
) -> MetaTensor:
    """One Synapse image or label as a channel-first ``(1, H, W, D)`` float32 MetaTensor.

    - NIfTI / NRRD / MetaImage (raw BTCV) and DICOM series folders: loaded by MONAI (nibabel for NIfTI: stored
      voxel order, header affine and fields in the metadata; ITK for DICOM: slices sorted by position, the series
      geometry as a RAS affine); images clipped to ``hu_window`` and scaled to [0, 1]; labels mapped from the 13
      BTCV ids to the 8 Synapse classes (``label_mapping="btcv"``; ``"none"`` keeps them as stored).
    - TransUNet ``.npz`` slices / ``.npy.h5`` volumes: the ``role`` array (``"image"`` or ``"label"``) through
      :class:`~attnseg_monai.data.TransUNetNpzReader` / :class:`~attnseg_monai.data.TransUNetH5Reader`; already
      windowed and mapped, so nothing is changed; identity affine (1 mm voxels). A 2D slice becomes a one-slice
      volume ``(1, H, W, 1)``, so slices and volumes share one pipeline.

    Args:
        path: the file.
        role: ``"image"`` or ``"label"``.
        hu_window: ``(low, high)`` HU mapped to [0, 1]; ``None`` leaves raw images unchanged.
        label_mapping: ``"btcv"`` or ``"none"`` (raw label files only).

    Raises:
        ValueError: for a bad ``role``, ``label_mapping`` or window, or a file that is not a 2D slice or a 3D volume.
    """
    if role not in ("image", "label"):
        raise ValueError(f"role must be 'image' or 'label', got {role!r}.")
    if label_mapping not in ("btcv", "none"):
        raise ValueError(f"label_mapping must be 'btcv' (raw BTCV ids) or 'none', got {label_mapping!r}.")
    name = str(path).lower()
    preprocessed = is_transunet_file(name)
    img = (_loader_for("dicom", role) if is_dicom_folder(path) else _loader(name, role))(str(path))
    if img.ndim == 3:
        img = img.unsqueeze(-1)
    if img.ndim != 4 or img.shape[0] != 1:
        raise ValueError(
            f"{path}: expected a single-channel 2D slice or 3D volume, got an array of shape {tuple(img.shape)}."
        )
    if preprocessed:
        return img
    if role == "image" and hu_window is not None:
        low, high = (float(v) for v in hu_window)
        if not high > low:
            raise ValueError(f"hu_window must be (low, high) with high > low, got {tuple(hu_window)}.")
        img = (img.clamp(low, high) - low) / (high - low)
    elif role == "label" and label_mapping == "btcv":
        img = btcv_to_synapse8(img)
    return img


class LoadSynapsed(MapTransform):
    """Load Synapse images and labels from any of the bundle's layouts with one transform (see :func:`load_synapse`).

    Raw BTCV NIfTI images are clipped to the HU window and scaled to [0, 1] and their labels mapped to the 8
    Synapse organs; TransUNet's ``.npz`` / ``.npy.h5`` files (already preprocessed) are loaded as they are. Every
    entry becomes a ``(1, H, W, D)`` MetaTensor (a 2D slice has ``D = 1``) whose metadata (affine, NIfTI header
    fields, file name) ``Invertd`` and ``SaveImaged`` use.

    Args:
        keys: the entries to load (file paths).
        label_keys: which of them are labels.
        hu_window: ``(low, high)`` HU window for raw images (TransUNet: -125, 275).
        label_mapping: ``"btcv"`` (raw labels hold BTCV ids 0..13) or ``"none"``.
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: for bad options (see :func:`load_synapse`).

    Examples:
        3D volume (raw BTCV) and 2D slice (TransUNet npz) through the same transform::

            load = LoadSynapsed(keys=["image", "label"])
            vol = load({"image": "img/img0001.nii.gz", "label": "label/label0001.nii.gz"})  # (1, 512, 512, 147)
            sl = load({"image": "train_npz/case0005_slice000.npz", "label": "train_npz/case0005_slice000.npz"})
            sl["image"].shape  # (1, 512, 512, 1)
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        label_keys: KeysCollection = ("label",),
        hu_window: Sequence[float] | None = HU_WINDOW,
        label_mapping: str = "btcv",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if label_mapping not in ("btcv", "none"):
            raise ValueError(f"label_mapping must be 'btcv' (raw BTCV ids) or 'none', got {label_mapping!r}.")
        if hu_window is not None and (len(hu_window) != 2 or not float(hu_window[1]) > float(hu_window[0])):
            raise ValueError(f"hu_window must be (low, high) HU with high > low, or None; got {hu_window!r}.")
        self.label_keys = {label_keys} if isinstance(label_keys, (str, int)) else set(label_keys)
        self.hu_window = None if hu_window is None else (float(hu_window[0]), float(hu_window[1]))
        self.label_mapping = label_mapping

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            role = "label" if key in self.label_keys else "image"
            d[key] = load_synapse(d[key], role, hu_window=self.hu_window, label_mapping=self.label_mapping)
        return d


class RandAxialSlicesd(Randomizable, MapTransform, MultiSampleTrait):
    """Random axial slices of channel-first volumes: the 2D training samples of a slice-wise network.

    From ``(C, H, W, D)`` entries (cached volumes, typically already resized in-plane) it draws
    ``min(num_samples, D)`` distinct slice indices along ``axis`` and returns that many dicts with ``(C, H, W)``
    slices (all ``keys`` cut at the same index; other entries copied). A one-slice volume (a TransUNet ``.npz``
    slice) gives one sample. By default uniform over slices, as TransUNet's loader draws every slice once per epoch.

    ``class_balance`` (with ``label_key``) mixes in class-balanced draws, the 2D analogue of
    ``RandCropByLabelClassesd``: with weight ``class_balance`` a slice is drawn by picking one of the organs present
    in the volume uniformly, then one of the slices holding it uniformly (so an organ on 15 of 64 slices is drawn as
    often as one on all 64); with weight ``1 - class_balance`` uniformly. Slices stay distinct within a call.

    Args:
        keys: entries to slice (image and label).
        num_samples: slices drawn per volume and call.
        axis: spatial axis of the slices (0-based; ``-1``: the last, axial for CT stored the usual way).
        label_key: the class-index label the balance is computed from (one of ``keys``).
        class_balance: weight in [0, 1] of the class-balanced draw (0: uniform over slices).
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: for ``num_samples < 1``, an axis outside the spatial axes, ``class_balance`` outside [0, 1] or
            without ``label_key``, or entries whose slice counts differ.

    Examples:
        3D -> 2D (the bundle's training samples)::

            sampler = RandAxialSlicesd(keys=["image", "label"], num_samples=4)
            slices = sampler({"image": torch.rand(1, 224, 224, 64), "label": torch.zeros(1, 224, 224, 64)})
            len(slices), slices[0]["image"].shape  # 4, (1, 224, 224)

        A 2D slice stored as a one-slice volume::

            RandAxialSlicesd(keys="image", num_samples=4)({"image": torch.rand(1, 224, 224, 1)})  # one sample
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_samples: int = 8,
        axis: int = -1,
        label_key: str | None = None,
        class_balance: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}.")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis <= 2:
            raise ValueError(f"axis must be a spatial axis of a 3D volume, in [-3, 2], got {axis!r}.")
        if not 0.0 <= float(class_balance) <= 1.0:
            raise ValueError(f"class_balance must be in [0, 1] (0: uniform slices), got {class_balance!r}.")
        if class_balance > 0 and label_key is None:
            raise ValueError("class_balance > 0 needs label_key, the class-index label to balance the organs of.")
        self.num_samples = int(num_samples)
        self.axis = int(axis) % 3
        self.label_key = label_key
        self.class_balance = float(class_balance)
        self._indices: list[int] = []

    def slice_weights(self, label: Any) -> np.ndarray | None:
        """Draw probability of each slice of ``label`` ``(1, H, W, D)`` (``None``: uniform), see the class docstring."""
        if self.class_balance <= 0:
            return None
        lab = torch.as_tensor(np.asarray(label) if not isinstance(label, torch.Tensor) else label)
        lab = lab.movedim(self.axis + 1, -1).reshape(-1, lab.shape[self.axis + 1])
        depth = lab.shape[-1]
        classes = [int(c) for c in torch.unique(lab).tolist() if c > 0]
        uniform = np.full(depth, 1.0 / depth)
        if not classes:
            return uniform
        balanced = np.zeros(depth)
        for c in classes:
            holds = (lab == c).any(dim=0).numpy().astype(np.float64)
            balanced += holds / holds.sum() / len(classes)
        return (1.0 - self.class_balance) * uniform + self.class_balance * balanced

    def randomize(self, depth: int, weights: np.ndarray | None = None) -> None:
        """Draw the slice indices for a volume of ``depth`` slices (``weights``: their probabilities)."""
        count = min(self.num_samples, depth)
        if weights is not None:
            count = min(count, int(np.count_nonzero(weights)))
        self._indices = [int(i) for i in self.R.choice(depth, size=count, replace=False, p=weights)]

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return [d]
        depths = {key: int(d[key].shape[self.axis + 1]) for key in keys}
        if any(len(d[key].shape) != 4 for key in keys):
            shapes = {str(key): tuple(d[key].shape) for key in keys}
            raise ValueError(f"RandAxialSlicesd expects channel-first volumes (C, H, W, D), got {shapes}.")
        if len(set(depths.values())) != 1:
            raise ValueError(f"RandAxialSlicesd: the entries have different slice counts {depths}.")
        weights = self.slice_weights(d[self.label_key]) if self.label_key in keys else None
        self.randomize(next(iter(depths.values())), weights)
        out = []
        for index in self._indices:
            item = dict(d)
            cut = (slice(None),) * (self.axis + 1) + (index,)
            for key in keys:
                item[key] = d[key][cut]
            out.append(item)
        return out
