"""Synapse multi-organ CT as MONAI datalists: the layouts read, checked, split; the volumes to segment; their names.

The Synapse benchmark of TransUNet (Chen et al., arXiv:2102.04306), which DANIE (seed 003) reports, scores 8
abdominal organs of the BTCV CT scans. Three sources give the same items (``{"image": ..., "label": ...}``):

- the embedded phantoms of :func:`~attnseg_monai.data.make_synapse_sample` (raw BTCV layout, generated);
- the raw BTCV layout: ``img/img0001.nii.gz`` + ``label/label0001.nii.gz``, the 13 BTCV ids;
- TransUNet's preprocessed files: ``train_npz/*.npz`` slices, ``test_vol_h5/*.npy.h5`` volumes.

:func:`prepare_synapse_datalist` reads, checks, splits and writes one of them as a datalist;
:func:`synapse_inference_items` lists the volumes to segment (files, folders, DICOM series);
:func:`synapse_output_name` names a prediction after its input. Loading and slice sampling are in
:mod:`attnseg_monai.transforms.synapse`, the per-organ scores in :mod:`attnseg_monai.metrics.synapse`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.dicom import is_dicom_folder
from ..io.suffixes import TRANSUNET_EXTENSIONS
from .ct_inputs import volume_inputs
from .ct_labels import SYNAPSE_CLASSES
from .ct_layouts import BTCVReader, TransUNetSynapseReader, volume_case_key
from .ct_samples import TRANSUNET_TEST_CASES, TRANSUNET_TRAIN_CASES, make_synapse_sample
from .datalist import make_datalist, select_fold, write_datalist
from .discovery import find_reader, read_dataset
from .volumes import validate_volume_pairs

__all__ = [
    "SYNAPSE_ORGANS",
    "is_transunet_file",
    "prepare_synapse_datalist",
    "require_volumes",
    "synapse_inference_items",
    "synapse_output_name",
]

logger = logging.getLogger(__name__)

#: the 8 organs of the Synapse protocol, in channel order 1..8 (channel 0 is background)
SYNAPSE_ORGANS: tuple[str, ...] = tuple(SYNAPSE_CLASSES[1:])
_TRANSUNET_VOLUME = (".h5", ".hdf5")
_SLICE_NAME = re.compile(r"case(\d+)_slice\d+", re.IGNORECASE)


def is_transunet_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of TransUNet's preprocessed files (``.npz`` slice, ``.npy.h5`` / ``.hdf5`` volume)."""
    return str(path).lower().endswith(TRANSUNET_EXTENSIONS)


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
    volumes_only: bool = False,
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
        volumes_only: refuse 2D ``.npz`` slices among the returned items (:func:`require_volumes`; the 3D
            configuration trains on volumes).
        sample_kwargs: passed to the sample maker (``num_cases``, ``shape``, ``spacing``); ignored unless
            ``embedded``, so a config may always pass its ``embedded_sample``.

    Raises:
        ValueError: for an unknown option, a layout that is not a Synapse layout, a TransUNet split asked for
            on cases that lack some of its case ids, or slices where ``volumes_only`` asks for volumes.
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
        chosen = train_items
    elif split == "validation":
        chosen = val_items
    else:
        chosen = train_items + val_items
    return require_volumes(chosen) if volumes_only else chosen


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

    A folder in TransUNet's layout gives its ``test_vol_h5`` volumes; a raw BTCV folder its ``Testing/img`` volumes
    when there are any, else its training images; anything else what
    :func:`~attnseg_monai.data.ct_inputs.volume_inputs` takes (one volume file or DICOM series folder, or the volume
    files, TransUNet ``.h5`` volumes included, and DICOM series sub-folders of a folder). ``sample_kwargs`` go to the
    sample maker and are ignored unless ``embedded``.

    Raises:
        FileNotFoundError: if ``dataset_dir`` does not exist or holds no volume.
    """
    if embedded:
        return [{"image": item["image"]} for item in make_synapse_sample(dataset_dir, **sample_kwargs)]
    root = Path(dataset_dir)
    if not root.is_dir() or is_dicom_folder(root):
        return volume_inputs(root, extra_suffixes=_TRANSUNET_VOLUME)
    if TransUNetSynapseReader.detect(root) and any(p.name.lower() == "test_vol_h5" for p in root.iterdir()):
        items = read_dataset(root, layout="transunet", section="test")
    elif BTCVReader.detect(root):
        try:
            items = read_dataset(root, layout="btcv", section="test")
        except ValueError:
            items = []
        items = items or read_dataset(root, layout="btcv")
    else:
        return volume_inputs(root, extra_suffixes=_TRANSUNET_VOLUME)
    if not items:
        raise FileNotFoundError(
            f"{root}: holds no volume (NIfTI, NRRD, MetaImage, TransUNet .npy.h5 or a DICOM series folder)."
        )
    return [{"image": str(Path(i["image"]).resolve())} for i in items]


def synapse_output_name(metadict: Mapping[str, Any] | None, saver: Any) -> dict[str, Any]:
    """``SaveImaged`` name formatter: the input's name, with TransUNet's ``case0001.npy.h5`` giving ``case0001``.

    Use as ``"output_name_formatter": "$attnseg_monai.data.synapse.synapse_output_name"``.
    """
    subject = str((metadict or {}).get("filename_or_obj", getattr(saver, "_data_index", 0)))
    if subject.lower().endswith(".npy.h5"):
        subject = subject[: -len(".npy.h5")] + ".h5"
    index = (metadict or {}).get("patch_index")
    return {"subject": subject, "idx": index}
