"""Synapse multi-organ CT for the ``danie`` bundle (DANIE, seed 003): datalists, loading, slice sampling, tables.

DANIE (*Dual Attention Encoder with Joint Preservation for Medical Image Segmentation*, ECAI 2024) reports the
Synapse benchmark of TransUNet (Chen et al., arXiv:2102.04306): 8 abdominal organs of the BTCV CT scans, 2D
networks trained on axial slices resized to 224 x 224 after clipping the HU values to [-125, 275], evaluated per
volume with Dice and HD95 per organ. This module holds what the bundle's configs call besides MONAI:

- :func:`prepare_synapse_datalist` / :func:`synapse_inference_items`: the embedded phantoms, the raw BTCV layout
  (``img/img0001.nii.gz`` + ``label/label0001.nii.gz``, 13 BTCV ids) or TransUNet's preprocessed files
  (``train_npz/*.npz`` slices, ``test_vol_h5/*.npy.h5`` volumes), checked, split and written as a datalist;
- :class:`LoadSynapsed`: any of these files as a channel-first ``(1, H, W, D)`` MetaTensor with the Synapse
  conventions (image in [0, 1] after the HU window, labels 0..8 in :data:`SYNAPSE_CLASSES` order);
- :class:`RandAxialSlicesd`: random axial slices of cached volumes, the 2D training samples;
- :func:`synapse_case_scores`, :class:`SynapseTableHandler`: the per-organ Dice / HD95 (+ IoU, ASD) table.

What a checkpoint was trained with (network, slice size, HU window) is the record beside it
(:mod:`attnseg_monai.bundle.record`).
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Randomizable
from monai.transforms.traits import MultiSampleTrait

from ..data import (
    SYNAPSE_CLASSES,
    TRANSUNET_TEST_CASES,
    TRANSUNET_TRAIN_CASES,
    TransUNetH5Reader,
    TransUNetNpzReader,
    TransUNetSynapseReader,
    atomic_write_json,
    btcv_to_synapse8,
    find_reader,
    make_datalist,
    make_synapse_sample,
    read_dataset,
    select_fold,
    validate_volume_pairs,
    write_datalist,
)
from ..data.ct_readers import BTCVReader, is_volume_file, volume_case_key
from ..data.fileio import atomic_write_bytes
from ..metrics import evaluate_case
from ..networks.nets.danie import _PRESETS

__all__ = [
    "DANIE_PRESETS",
    "EMPTY_POLICIES",
    "HU_WINDOW",
    "SYNAPSE_ORGANS",
    "LoadSynapsed",
    "RandAxialSlicesd",
    "SynapseTableHandler",
    "danie_preset",
    "is_dicom_series",
    "load_synapse",
    "prepare_synapse_datalist",
    "require_volumes",
    "synapse_case_scores",
    "synapse_inference_items",
    "synapse_output_name",
    "synapse_table_markdown",
]

logger = logging.getLogger(__name__)

#: the 8 organs of the Synapse protocol, in channel order 1..8 (channel 0 is background)
SYNAPSE_ORGANS: tuple[str, ...] = tuple(SYNAPSE_CLASSES[1:])
#: TransUNet's CT window in HU, mapped linearly to [0, 1] (values outside are clipped)
HU_WINDOW: tuple[float, float] = (-125.0, 275.0)
#: the DANIE presets of the network (``attnseg_monai.networks.nets.danie_small`` / ``_base`` / ``_large``; the paper
#: reports DANIE-L) as JSON-friendly lists, plus the bundle's ``"tiny"`` width for the 2-core CPU quick recipe (not a
#: configuration of the paper: a quarter of the small widths' compute, one block per stage)
DANIE_PRESETS: dict[str, dict[str, list[int]]] = {
    "tiny": {"embed_dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 4]},
    **{name: {key: list(value) for key, value in preset.items()} for name, preset in _PRESETS.items()},
}
#: how empty organs are scored, see :func:`synapse_case_scores`
EMPTY_POLICIES = ("exclude", "transunet")
_TRANSUNET_FILE = (".npz", ".h5", ".hdf5")
_SLICE_NAME = re.compile(r"case(\d+)_slice\d+", re.IGNORECASE)
_CASE_NAME = re.compile(r"case(\d+)", re.IGNORECASE)
_METRICS = ("dice", "hd95", "iou", "asd")


def danie_preset(name: str) -> dict[str, list[int]]:
    """``embed_dims``, ``depths``, ``num_heads`` of a DANIE preset: ``"tiny"``, ``"small"``, ``"base"``, ``"large"``.

    Raises:
        ValueError: for an unknown preset name.
    """
    if name not in DANIE_PRESETS:
        raise ValueError(f"unknown DANIE preset {name!r}; presets: {', '.join(DANIE_PRESETS)} (the paper: large).")
    return {key: list(value) for key, value in DANIE_PRESETS[name].items()}


# ----------------------------------------------------------------------------------------------------------------
# datalists


def _is_transunet_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(_TRANSUNET_FILE)


def _btcv_case_id(path: str) -> int | None:
    key = volume_case_key(Path(path).name)
    return int(key) if key.isdigit() else None


def _slice_case_id(path: str) -> int:
    match = _SLICE_NAME.search(Path(path).name)
    return int(match.group(1)) if match else -1


def _detect_layout(dataset_dir: str | os.PathLike, layout: str) -> str:
    if layout not in ("auto", "btcv", "transunet"):
        raise ValueError(
            f"layout must be 'auto', 'btcv' (raw BTCV NIfTI) or 'transunet' (TransUNet npz/h5), got {layout!r}."
        )
    if layout != "auto":
        return layout
    name = find_reader(dataset_dir).name
    if name not in ("btcv", "transunet"):
        raise ValueError(
            f"{dataset_dir}: detected the {name!r} layout; the danie bundle reads the raw BTCV layout "
            "(img/img0001.nii.gz + label/label0001.nii.gz) or TransUNet's files (train_npz/ + test_vol_h5/)."
        )
    return name


def prepare_synapse_datalist(
    dataset_dir: str | os.PathLike,
    datalist_file: str | os.PathLike,
    *,
    embedded: bool,
    split: str = "training",
    layout: str = "auto",
    split_mode: str = "auto",
    fold: int | None = None,
    val_fraction: float = 0.2,
    num_folds: int = 5,
    seed: int = 0,
    validate: bool = True,
    **sample_kwargs: Any,
) -> list[dict[str, Any]]:
    """The items of one split of a Synapse data set, after making or reading it and checking every pair.

    Sources:

    - ``embedded=True``: the generated phantoms of :func:`~attnseg_monai.data.make_synapse_sample` are written to
      ``dataset_dir`` (raw BTCV layout) and split case-wise with a fixed seed.
    - raw BTCV (``layout="btcv"``): volumes with the 13 BTCV ids. ``split_mode="transunet"`` uses TransUNet's case
      split (18 training cases :data:`~attnseg_monai.data.TRANSUNET_TRAIN_CASES`, 12 test cases used for
      validation); ``"random"`` a seeded case-wise split (``val_fraction``); ``"auto"`` the TransUNet split when
      all its 30 cases are present, else the random one.
    - TransUNet's files (``layout="transunet"``): training = the ``train_npz`` slices of ``train.txt``, validation =
      the ``test_vol_h5`` volumes of ``test_vol.txt``. Slices are never split among themselves (slices of one case
      would land on both sides); folds, when asked for, are dealt by case.

    Every pair is checked first (:func:`~attnseg_monai.data.validate_volume_pairs`: shapes, geometry, label values
    0..13 for BTCV and 0..8 for TransUNet files; slices without organs are legitimate, volumes without organs are
    not). The datalist (``training`` with ``fold`` numbers, ``validation``) is written to ``datalist_file``.

    Args:
        dataset_dir: the data set folder (or where the embedded sample goes).
        datalist_file: where the datalist JSON is written (atomically).
        embedded: make the embedded sample instead of reading a data set.
        split: ``"training"``, ``"validation"`` or ``"all"``.
        layout: ``"auto"``, ``"btcv"`` or ``"transunet"``.
        split_mode: ``"auto"``, ``"transunet"`` or ``"random"`` (raw BTCV and embedded data).
        fold: cross-validation fold (``None``: all training items against the validation set).
        val_fraction: held-out share for the random split.
        num_folds: number of folds the training items (cases) are dealt into (at most one per training case).
        seed: split seed.
        validate: check every pair first.
        sample_kwargs: passed to the sample maker (``num_cases``, ``shape``, ``spacing``).

    Raises:
        ValueError: for an unknown option, a layout that is not a Synapse layout, or a TransUNet split asked for
            on cases that lack some of its case ids.
        attnseg_monai.data.DatasetError: listing every offending file and its problem.
    """
    if split not in ("training", "validation", "all"):
        raise ValueError(f"split must be 'training', 'validation' or 'all', got {split!r}.")
    if split_mode not in ("auto", "transunet", "random"):
        raise ValueError(f"split_mode must be 'auto', 'transunet' or 'random', got {split_mode!r}.")
    if embedded:
        items, kind = make_synapse_sample(dataset_dir, **sample_kwargs), "btcv"
    else:
        kind = _detect_layout(dataset_dir, layout)
        items = read_dataset(dataset_dir, layout=kind)
    if kind == "transunet":
        test = read_dataset(dataset_dir, layout="transunet", section="test")
        if not test:
            raise ValueError(f"{dataset_dir}: no test_vol_h5 volumes to validate on (TransUNet's test section).")
        if validate:
            validate_volume_pairs(items, label_values=range(9), allow_empty_labels=True)
            validate_volume_pairs(test, label_values=range(9))
        cases = sorted({_slice_case_id(i["image"]) for i in items})
        fold_of = {c: k % num_folds for k, c in enumerate(cases)}
        training = [{**i, "fold": fold_of[_slice_case_id(i["image"])]} for i in items]
        datalist: dict[str, Any] = {"training": training, "validation": [dict(i) for i in test]}
        mode = "transunet"
    else:
        if validate:
            validate_volume_pairs(items, label_values=range(14))
        ids = {_btcv_case_id(i["image"]) for i in items}
        protocol = set(TRANSUNET_TRAIN_CASES) | set(TRANSUNET_TEST_CASES)
        mode = split_mode
        if mode == "auto":
            mode = "transunet" if protocol <= ids else "random"
        if mode == "transunet":
            if not protocol <= ids:
                raise ValueError(
                    f"split_mode='transunet' needs the BTCV cases {sorted(protocol)}; "
                    f"missing: {sorted(protocol - ids)}."
                )
            train = [i for i in items if _btcv_case_id(i["image"]) in TRANSUNET_TRAIN_CASES]
            datalist = {
                "training": [{**i, "fold": k % num_folds} for k, i in enumerate(train)],
                "validation": [dict(i) for i in items if _btcv_case_id(i["image"]) in TRANSUNET_TEST_CASES],
            }
        else:
            n_val = max(1, int(round(len(items) * float(val_fraction)))) if val_fraction > 0 else 0
            folds = max(1, min(num_folds, len(items) - n_val))  # a small sample cannot fill 5 folds
            datalist = make_datalist(items, val_fraction=val_fraction, num_folds=folds, seed=seed)
    Path(datalist_file).parent.mkdir(parents=True, exist_ok=True)
    write_datalist(datalist, datalist_file)
    train_items, val_items = select_fold(datalist, fold)
    logger.info(
        "Synapse data in %s (%s layout, %s split): %d training and %d validation items (datalist %s)",
        dataset_dir,
        kind,
        mode,
        len(train_items),
        len(val_items),
        datalist_file,
    )
    if split == "training":
        return train_items
    if split == "validation":
        return val_items
    return train_items + val_items


def require_volumes(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``items`` unchanged when every image is a volume; the 3D configuration cannot train on 2D ``.npz`` slices.

    Raises:
        ValueError: if an item is a TransUNet ``.npz`` slice (use the raw BTCV layout for the 3D configuration).
    """
    slices = [i["image"] for i in items if str(i["image"]).lower().endswith(".npz")]
    if slices:
        raise ValueError(
            f"the 3D configuration trains on volumes, but {len(slices)} items are TransUNet .npz slices (e.g. "
            f"{slices[0]}); point --dataset_dir at the raw BTCV data (img/ + label/) instead."
        )
    return [dict(i) for i in items]


def synapse_inference_items(
    dataset_dir: str | os.PathLike, *, embedded: bool, **sample_kwargs: Any
) -> list[dict[str, str]]:
    """Volumes to segment: the embedded phantoms, one file, one DICOM series folder, or the volumes of a folder.

    A folder holding ``.dcm`` files is one DICOM series (read by ITK, which sorts the slices by position). A folder
    in TransUNet's layout gives its ``test_vol_h5`` volumes; a raw BTCV folder its ``Testing/img`` volumes when
    there are any, else its training images; any other folder every volume file in it (NIfTI, NRRD, MetaImage,
    ``.h5``) and every sub-folder that is a DICOM series.

    Raises:
        FileNotFoundError: if ``dataset_dir`` does not exist or holds no volume.
    """
    if embedded:
        return [{"image": item["image"]} for item in make_synapse_sample(dataset_dir, **sample_kwargs)]
    root = Path(dataset_dir)
    if is_dicom_series(root):
        return [{"image": str(root.resolve())}]
    if root.is_file():
        if not (is_volume_file(root) or root.name.lower().endswith((".h5", ".hdf5"))):
            raise FileNotFoundError(f"{root}: not a volume this bundle reads (NIfTI, NRRD, MetaImage, TransUNet .h5).")
        return [{"image": str(root.resolve())}]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder.")
    if TransUNetSynapseReader.detect(root) and any(p.name.lower() == "test_vol_h5" for p in root.iterdir()):
        items = read_dataset(root, layout="transunet", section="test")
    elif BTCVReader.detect(root):
        try:
            items = read_dataset(root, layout="btcv", section="test")
        except ValueError:
            items = []
        items = items or read_dataset(root, layout="btcv")
    else:
        files = sorted(
            p
            for p in root.iterdir()
            if is_volume_file(p) or p.name.lower().endswith((".h5", ".hdf5")) or is_dicom_series(p)
        )
        items = [{"image": str(p.resolve())} for p in files]
    if not items:
        raise FileNotFoundError(
            f"{root}: holds no volume (NIfTI, NRRD, MetaImage, TransUNet .npy.h5 or a DICOM series folder)."
        )
    return [{"image": str(Path(i["image"]).resolve())} for i in items]


def is_dicom_series(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder that directly holds ``.dcm`` files (one DICOM series, read with ITK)."""
    folder = Path(path)
    return folder.is_dir() and any(p.suffix.lower() == ".dcm" and p.is_file() for p in folder.iterdir())


def synapse_output_name(metadict: Mapping[str, Any] | None, saver: Any) -> dict[str, Any]:
    """``SaveImaged`` name formatter: the input's name, with TransUNet's ``case0001.npy.h5`` giving ``case0001``.

    Use as ``"output_name_formatter": "$attnseg_monai.bundle.synapse.synapse_output_name"``.
    """
    subject = str((metadict or {}).get("filename_or_obj", getattr(saver, "_data_index", 0)))
    if subject.lower().endswith(".npy.h5"):
        subject = subject[: -len(".npy.h5")] + ".h5"
    index = (metadict or {}).get("patch_index")
    return {"subject": subject, "idx": index}


# ----------------------------------------------------------------------------------------------------------------
# loading and slice sampling


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
    preprocessed = _is_transunet_file(name)
    img = (_loader_for("dicom", role) if is_dicom_series(path) else _loader(name, role))(str(path))
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


# ----------------------------------------------------------------------------------------------------------------
# per-organ scores and tables


def synapse_case_scores(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    *,
    spacing: float | Sequence[float] | None = None,
    metrics: Sequence[str] = _METRICS,
    empty_policy: str = "exclude",
    hd_mode: str = "pooled",
    num_classes: int = len(SYNAPSE_CLASSES),
) -> dict[str, Any]:
    """Per-organ scores of one volume: Dice, HD95 (and IoU, ASD) for the 8 Synapse organs.

    Distances are in the units of ``spacing`` (mm for NIfTI volumes; ``None`` reads a ``MetaTensor`` label's
    affine, else 1 = voxels, which is what TransUNet's ``.npy.h5`` files give). ``hd_mode="pooled"`` is MedPy's
    ``hd95`` used by TransUNet's evaluation; ``"max_of_directed"`` MONAI's.

    Empty organs, ``empty_policy="exclude"`` (the project's policy, :mod:`attnseg_monai.metrics`):

    ======================================  =====================  =========================================
    organ                                   Dice / IoU             HD95 / ASD
    ======================================  =====================  =========================================
    in label and prediction                 measured               measured
    in neither                              NaN (left out)         NaN (left out of the means)
    in the label only (missed)              0                      image diagonal (largest possible distance)
    in the prediction only (false alarm)    0                      image diagonal
    ======================================  =====================  =========================================

    ``empty_policy="transunet"`` reproduces TransUNet's ``test.py`` (``calculate_metric_percase``) for comparing
    with published tables: in neither -> Dice 0, HD95 0; prediction only -> Dice 1, HD95 0; label only -> Dice 0,
    HD95 0; nothing is left out of the means. Note that it scores a missed organ with HD95 = 0.

    Args:
        pred: predicted class indices ``(H, W, D)`` or ``(1, H, W, D)``.
        label: reference class indices, same shape.
        spacing: voxel size (one value or one per axis).
        metrics: any of ``"dice"``, ``"hd95"``, ``"iou"``, ``"asd"``.
        empty_policy: ``"exclude"`` or ``"transunet"``.
        hd_mode: ``"pooled"`` or ``"max_of_directed"``.
        num_classes: classes including background (9 for Synapse).

    Returns:
        ``{"organs": [...], "status": [...], <metric>: [value per organ], "mean": {<metric>: mean over organs}}``.

    Raises:
        ValueError: for an unknown policy or metric, or inputs :func:`~attnseg_monai.metrics.evaluate_case` rejects.

    Example::

        scores = synapse_case_scores(pred, label, spacing=(0.76, 0.76, 3.0))
        scores["dice"][SYNAPSE_ORGANS.index("liver")]
    """
    if empty_policy not in EMPTY_POLICIES:
        raise ValueError(f"empty_policy must be one of {EMPTY_POLICIES}, got {empty_policy!r}.")
    bad = [m for m in metrics if m not in _METRICS]
    if bad or not metrics:
        raise ValueError(f"metrics must name some of {_METRICS}, got {tuple(metrics)}.")
    out = evaluate_case(
        pred,
        label,
        num_classes,
        spacing=spacing,
        metrics=tuple(metrics),
        include_background=False,
        both_empty="exclude",
        one_empty="max_distance",
        hd_mode=hd_mode,
    )
    names = list(SYNAPSE_CLASSES[1:num_classes]) if num_classes <= len(SYNAPSE_CLASSES) else out["classes"]
    result: dict[str, Any] = {"organs": [str(n) for n in names], "status": list(out["status"])}
    for m in metrics:
        values = list(out[m])
        if empty_policy == "transunet":
            overlap = m in ("dice", "iou")
            for c, status in enumerate(out["status"]):
                if status == "gt_empty":  # predicted, not in the label
                    values[c] = 1.0 if overlap else 0.0
                elif status in ("both_empty", "pred_empty"):
                    values[c] = 0.0
        result[m] = values
    result["mean"] = {m: _nanmean(result[m]) for m in metrics}
    return result


def _nanmean(values: Sequence[float]) -> float:
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return float(sum(kept) / len(kept)) if kept else float("nan")


def _nanstd(values: Sequence[float]) -> float:
    kept = np.asarray([float(v) for v in values if not math.isnan(float(v))])
    return float(kept.std()) if kept.size else float("nan")


def _as_label_map(x: Any) -> Any:
    """One-hot ``(C, ...)`` with C > 1 -> ``(1, ...)`` class indices; label maps pass through."""
    if isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[0] > 1:
        return x.argmax(dim=0, keepdim=True)
    return x


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def synapse_table_markdown(summary: Mapping[str, Any], title: str = "DANIE") -> str:
    """The table Synapse papers print: mean DSC (%) and HD95, then the Dice (%) of each organ.

    Args:
        summary: the ``summary.json`` content written by :class:`SynapseTableHandler`.
        title: the row label (method name).
    """
    organs = summary["organs"]
    units = summary.get("distance_units", "mm")
    head = ["Method", "DSC (%)", f"HD95 ({units})"] + [o.replace("_", " ") for o in organs]
    dice = [100 * summary["per_organ"][o]["dice"]["mean"] for o in organs]
    row = [title, _fmt(100 * summary["mean"]["dice"]), _fmt(summary["mean"].get("hd95", float("nan")))]
    row += [_fmt(v) for v in dice]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(row) + " |"]
    if "hd95" in summary["mean"]:
        hd = ["HD95 per organ", "", ""] + [_fmt(summary["per_organ"][o]["hd95"]["mean"]) for o in organs]
        lines.append("| " + " | ".join(hd) + " |")
    return "\n".join(lines) + "\n"


class SynapseTableHandler:
    """Ignite handler: per-case, per-organ Dice / HD95 / IoU / ASD of an evaluator, written as CSV + summary.

    At every iteration the decollated outputs' ``pred_key`` and ``label_key`` (class-index maps ``(1, H, W, D)``,
    or one-hot, at the label's resolution, i.e. after ``Invertd``) are scored with :func:`synapse_case_scores`,
    distances in mm from the label's affine (voxels for TransUNet ``.h5`` files, which carry no spacing). At the
    end of the run it writes to ``output_dir``:

    - ``per_case.csv``: one row per volume: ``case``, ``<metric>_<organ>`` for every metric and organ,
      ``<metric>_mean`` (mean over the organs scored in that case), ``status_<organ>`` (``evaluated``,
      ``both_empty``, ``pred_empty``, ``gt_empty``) and ``distance_units``;
    - ``summary.csv``: one row per organ and a last ``mean`` row: per metric the mean and standard deviation over
      cases (NaN skipped) and how many cases each empty-organ status had; the ``mean`` row is the mean over organs
      of the organ means (the "Average" column of TransUNet-style tables);
    - ``summary.json`` (the same numbers, the policy, the units) and ``synapse_table.md``
      (:func:`synapse_table_markdown`).

    With several processes (DDP) the rows are gathered and rank 0 writes.

    Args:
        output_dir: folder of the files (created).
        pred_key: key of the prediction in each output item.
        label_key: key of the label.
        metrics: any of ``"dice"``, ``"hd95"``, ``"iou"``, ``"asd"``.
        empty_policy: ``"exclude"`` (default) or ``"transunet"``, see :func:`synapse_case_scores`.
        hd_mode: ``"pooled"`` (MedPy/TransUNet, default) or ``"max_of_directed"`` (MONAI).
        spacing: fixed voxel size instead of the label's affine.
        title: method name in the markdown table.

    Raises:
        ValueError: for an unknown policy or metric.

    Example (evaluate.json)::

        {"_target_": "attnseg_monai.bundle.synapse.SynapseTableHandler", "output_dir": "@output_dir"}
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        pred_key: str = "pred",
        label_key: str = "label",
        metrics: Sequence[str] = _METRICS,
        empty_policy: str = "exclude",
        hd_mode: str = "pooled",
        spacing: float | Sequence[float] | None = None,
        title: str = "DANIE",
    ) -> None:
        if empty_policy not in EMPTY_POLICIES:
            raise ValueError(f"empty_policy must be one of {EMPTY_POLICIES}, got {empty_policy!r}.")
        if not metrics or any(m not in _METRICS for m in metrics):
            raise ValueError(f"metrics must name some of {_METRICS}, got {tuple(metrics)}.")
        if hd_mode not in ("pooled", "max_of_directed"):
            raise ValueError(f"hd_mode must be 'pooled' or 'max_of_directed', got {hd_mode!r}.")
        self.output_dir = Path(output_dir)
        self.pred_key = pred_key
        self.label_key = label_key
        self.metrics = tuple(metrics)
        self.empty_policy = empty_policy
        self.hd_mode = hd_mode
        self.spacing = spacing
        self.title = title
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Score every iteration of ``engine`` and write the tables when its run completes."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the rows of an earlier run."""
        self.rows = []

    def iteration_completed(self, engine: Engine) -> None:
        """Score the items of the engine's current output."""
        output = engine.state.output
        items = output if isinstance(output, (list, tuple)) else [output]
        for item in items:
            if not isinstance(item, Mapping):
                continue
            self.rows.append(self.score(item[self.pred_key], item[self.label_key]))

    def score(self, pred: Any, label: Any) -> dict[str, Any]:
        """The table row of one case (see the class docstring)."""
        pred, label = _as_label_map(pred), _as_label_map(label)
        label_meta = label.meta if isinstance(label, MetaTensor) else {}
        pred_meta = pred.meta if isinstance(pred, MetaTensor) else {}
        # the prediction carries the image's metadata (Invertd), so the case is named after the image file
        source = str(pred_meta.get("filename_or_obj") or label_meta.get("filename_or_obj") or f"case{len(self.rows)}")
        geometry = label_meta or pred_meta
        units = "voxels" if geometry.get("format") in ("npz", "hdf5") and self.spacing is None else "mm"
        scores = synapse_case_scores(
            pred,
            label,
            spacing=self.spacing,
            metrics=self.metrics,
            empty_policy=self.empty_policy,
            hd_mode=self.hd_mode,
        )
        name = Path(source).name
        for ending in (".nii.gz", ".npy.h5", ".nii", ".h5", ".nrrd", ".mha"):
            if name.lower().endswith(ending):
                name = name[: -len(ending)]
                break
        row: dict[str, Any] = {"case": name, "source": source, "distance_units": units}
        for m in self.metrics:
            for organ, value in zip(scores["organs"], scores[m]):
                row[f"{m}_{organ}"] = value
            row[f"{m}_mean"] = scores["mean"][m]
        for organ, status in zip(scores["organs"], scores["status"]):
            row[f"status_{organ}"] = status
        row["_organs"] = scores["organs"]
        return row

    def _gathered(self) -> list[dict[str, Any]] | None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:
                parts: list[Any] = [None] * world
                torch.distributed.all_gather_object(parts, self.rows)
                if torch.distributed.get_rank() != 0:
                    return None
                return [row for part in parts for row in part]
        return list(self.rows)

    def summary(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Per-organ means, standard deviations and status counts over ``rows``, and the means over organs."""
        organs = list(rows[0]["_organs"]) if rows else list(SYNAPSE_ORGANS)
        units = sorted({r["distance_units"] for r in rows}) or ["mm"]
        per_organ: dict[str, Any] = {}
        for organ in organs:
            entry: dict[str, Any] = {}
            for m in self.metrics:
                values = [float(r[f"{m}_{organ}"]) for r in rows]
                entry[m] = {
                    "mean": _nanmean(values),
                    "std": _nanstd(values),
                    "n": sum(not math.isnan(v) for v in values),
                }
            statuses = [r[f"status_{organ}"] for r in rows]
            entry["status_counts"] = {
                s: statuses.count(s) for s in ("evaluated", "both_empty", "pred_empty", "gt_empty")
            }
            per_organ[organ] = entry
        mean = {m: _nanmean([per_organ[o][m]["mean"] for o in organs]) for m in self.metrics}
        return {
            "cases": len(rows),
            "organs": organs,
            "metrics": list(self.metrics),
            "empty_policy": self.empty_policy,
            "hd_mode": self.hd_mode,
            "distance_units": units[0] if len(units) == 1 else "mixed",
            "per_organ": per_organ,
            "mean": mean,
        }

    def completed(self, engine: Engine | None = None) -> None:
        """Write ``per_case.csv``, ``summary.csv``, ``summary.json`` and ``synapse_table.md`` (rank 0)."""
        rows = self._gathered()
        if rows is None or not rows:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        summary = self.summary(rows)
        organs = summary["organs"]
        columns = ["case"]
        columns += [f"{m}_{o}" for m in self.metrics for o in organs] + [f"{m}_mean" for m in self.metrics]
        columns += [f"status_{o}" for o in organs] + ["distance_units", "source"]
        self._write_csv(self.output_dir / "per_case.csv", columns, [{c: r[c] for c in columns} for r in rows])
        summary_columns = ["organ"] + [f"{m}_{s}" for m in self.metrics for s in ("mean", "std")]
        summary_columns += ["evaluated", "both_empty", "pred_empty", "gt_empty"]
        table = []
        for organ in organs:
            entry = summary["per_organ"][organ]
            line: dict[str, Any] = {"organ": organ, **entry["status_counts"]}
            for m in self.metrics:
                line[f"{m}_mean"], line[f"{m}_std"] = entry[m]["mean"], entry[m]["std"]
            table.append(line)
        table.append({"organ": "mean", **{f"{m}_mean": summary["mean"][m] for m in self.metrics}})
        self._write_csv(self.output_dir / "summary.csv", summary_columns, table)
        atomic_write_json(self.output_dir / "summary.json", summary)
        markdown = synapse_table_markdown(summary, self.title)
        atomic_write_bytes(self.output_dir / "synapse_table.md", markdown.encode())
        logger.info(
            "Synapse per-organ table (%d cases, distances in %s, empty organs: %s):\n%s",
            len(rows),
            summary["distance_units"],
            self.empty_policy,
            markdown,
        )

    @staticmethod
    def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (_fmt(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
        os.replace(tmp, path)
