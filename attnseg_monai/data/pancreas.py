"""Pancreas CT (MSD Task07 layout) as MONAI datalists: the training split checked and written, the volumes to segment.

The ``attention_unet`` bundle (seed 004) reads the Medical Segmentation Decathlon's ``Task07_Pancreas`` layout
(``dataset.json`` + ``imagesTr/`` + ``labelsTr/`` + ``imagesTs/``), or makes its embedded phantoms
(:func:`~attnseg_monai.data.make_pancreas_sample`, the same layout). Its configs call:

- :func:`prepare_pancreas_datalist`: the items of one split, after reading (or making) the data, checking the pairs
  and writing the datalist;
- :func:`pancreas_inference_items`: the volumes to segment (the test section of the layout, or the volume files and
  DICOM series a path names).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from .ct_inputs import volume_inputs
from .ct_samples import make_pancreas_sample
from .datalist import make_datalist, select_fold, write_datalist
from .discovery import read_dataset
from .volumes import validate_volume_pairs

__all__ = ["VALIDATE_SCOPES", "pancreas_inference_items", "prepare_pancreas_datalist"]

logger = logging.getLogger(__name__)

#: which pairs :func:`prepare_pancreas_datalist` checks: every pair of the data set, the returned ones, none
VALIDATE_SCOPES: tuple[str, ...] = ("all", "split", "none")


def prepare_pancreas_datalist(
    dataset_dir: str | os.PathLike,
    datalist_file: str | os.PathLike,
    *,
    embedded: bool,
    split: str = "training",
    fold: int | None = None,
    label_values: Sequence[int] = (0, 1, 2),
    val_fraction: float = 0.2,
    num_folds: int = 5,
    seed: int = 0,
    validate: str = "all",
    **sample_kwargs: Any,
) -> list[dict[str, Any]]:
    """The items of one split of an MSD pancreas data set, after making or reading it and checking its pairs.

    With ``embedded=True`` the phantoms of :func:`~attnseg_monai.data.make_pancreas_sample` are written to
    ``dataset_dir`` (skipped when complete); otherwise ``dataset_dir`` is read as the MSD layout (its training
    section). The items are split with a fixed seed (:func:`~attnseg_monai.data.make_datalist`: held-out
    ``validation`` share, ``training`` dealt into folds), the pairs checked
    (:func:`~attnseg_monai.data.validate_volume_pairs`: shapes, geometry, label values), the datalist written to
    ``datalist_file`` (atomically), and the items of ``split`` returned.

    Args:
        dataset_dir: the data set folder (or where the embedded sample goes).
        datalist_file: where the datalist JSON is written.
        embedded: make the embedded sample instead of reading a data set.
        split: ``"training"``, ``"validation"`` or ``"all"``.
        fold: cross-validation fold (``None``: all training items against the held-out validation set).
        label_values: the label values a label may hold (``[0, 1, 2]``: background, pancreas, cancer).
        val_fraction: held-out share for validation.
        num_folds: number of folds the training items are dealt into.
        seed: split seed.
        validate: which pairs are checked before the datalist is written: ``"all"`` (every pair of the data set:
            training), ``"split"`` (the returned pairs only: an evaluation checks the cases it scores) or ``"none"``
            (the other half of a split a first call has checked).
        sample_kwargs: passed to the sample maker (``num_cases``, ``num_test``, ``shape``, ``spacing``); ignored
            unless ``embedded``, so a config may always pass its ``embedded_sample``.

    Raises:
        ValueError: for an unknown ``split`` or ``validate``, or a fold that is not in the datalist.
        attnseg_monai.data.DatasetError: listing every offending file and its problem.

    Example (train.json)::

        "train#datalist": "$attnseg_monai.data.prepare_pancreas_datalist(@dataset_dir, @datalist_file,
            embedded=@use_embedded_data, split='training', fold=@fold, label_values=@label_values,
            **@embedded_sample)"
    """
    if split not in ("training", "validation", "all"):
        raise ValueError(f"split must be 'training', 'validation' or 'all', got {split!r}.")
    if validate not in VALIDATE_SCOPES:
        raise ValueError(f"validate must be one of {VALIDATE_SCOPES}, got {validate!r}.")
    if embedded:
        items = make_pancreas_sample(dataset_dir, **sample_kwargs)
    else:
        items = read_dataset(dataset_dir, layout="msd")
    datalist = make_datalist(items, val_fraction=val_fraction, num_folds=num_folds, seed=seed)
    train_items, val_items = select_fold(datalist, fold)
    chosen = {"training": train_items, "validation": val_items, "all": train_items + val_items}[split]
    if validate == "all":
        validate_volume_pairs(datalist["training"] + datalist["validation"], label_values=label_values)
    elif validate == "split":
        validate_volume_pairs(chosen, label_values=label_values)
    write_datalist(datalist, datalist_file)
    logger.info(
        "pancreas data in %s: %d training and %d validation items (datalist %s)",
        dataset_dir,
        len(train_items),
        len(val_items),
        datalist_file,
    )
    return chosen


def pancreas_inference_items(
    dataset_dir: str | os.PathLike,
    *,
    embedded: bool,
    exclude: Sequence[str | os.PathLike] = (),
    **sample_kwargs: Any,
) -> list[dict[str, str]]:
    """Volumes to segment: the test section of an MSD layout, or the volumes ``dataset_dir`` names.

    - ``embedded=True``: the embedded phantoms are made in ``dataset_dir`` (``sample_kwargs``), and their test
      images (``imagesTs/``) returned;
    - a folder with a ``dataset.json`` (MSD layout): its test section;
    - anything else: :func:`~attnseg_monai.data.ct_inputs.volume_inputs` (one volume file or DICOM series folder,
      or the NIfTI/NRRD/MetaImage files and DICOM series sub-folders of a folder, never a folder in ``exclude``:
      the output folder).

    Raises:
        FileNotFoundError: if ``dataset_dir`` does not exist, is not a volume, or holds none.
    """
    if embedded:
        make_pancreas_sample(dataset_dir, **sample_kwargs)
        return read_dataset(dataset_dir, layout="msd", section="test")
    if os.path.isfile(os.path.join(dataset_dir, "dataset.json")):
        return read_dataset(dataset_dir, layout="msd", section="test")
    return volume_inputs(dataset_dir, exclude=exclude)
