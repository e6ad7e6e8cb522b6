"""Datalists for the bundles: the embedded default data, or a user's data set read, checked and split."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import (
    make_chest_xray_sample,
    make_datalist,
    make_mitosis_sample,
    make_nuclei_sample,
    read_dataset,
    select_fold,
    validate_pairs,
    write_datalist,
)

__all__ = ["TASKS", "TaskData", "inference_items", "prepare_datalist"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskData:
    """What a bundle task needs of its data: the embedded sample maker and the checks on real data."""

    make_sample: Callable[..., list[dict[str, str]]]
    channels: int
    label_values: frozenset[int] | None
    allow_empty_labels: bool


TASKS: dict[str, TaskData] = {
    # instance masks: any ids, so no fixed label values
    "nuclei": TaskData(make_nuclei_sample, channels=3, label_values=None, allow_empty_labels=False),
    # binary mitosis masks stored as 0/255 or 0/1; slides without a mitosis are legitimate
    "mitosis": TaskData(make_mitosis_sample, channels=3, label_values=frozenset({0, 1, 255}), allow_empty_labels=True),
    "lung": TaskData(make_chest_xray_sample, channels=1, label_values=frozenset({0, 1, 255}), allow_empty_labels=False),
}


def prepare_datalist(
    task: str,
    dataset_dir: str | os.PathLike,
    datalist_file: str | os.PathLike,
    *,
    embedded: bool,
    split: str = "training",
    fold: int | None = None,
    val_fraction: float = 0.2,
    num_folds: int = 5,
    seed: int = 0,
    layout: str = "auto",
    validate: bool = True,
    **sample_kwargs: Any,
) -> list[dict[str, Any]]:
    """The items of one split, after making or reading the data and checking every pair.

    With ``embedded=True`` the task's deterministic sample is written to ``dataset_dir`` (skipped when it is
    already complete; a folder holding other files is never overwritten). Otherwise the data set layout in
    ``dataset_dir`` is detected (or named by ``layout``) and read. Every image/label pair is then checked before
    any training starts, the items are split with a fixed seed, the datalist is written to ``datalist_file``, and
    the items of ``split`` are returned.

    Args:
        task: ``"nuclei"``, ``"mitosis"`` or ``"lung"``.
        dataset_dir: the data set folder (or where the embedded sample goes).
        datalist_file: where the datalist JSON is written (atomically).
        embedded: make the embedded sample instead of reading a data set.
        split: ``"training"``, ``"validation"`` or ``"all"``.
        fold: cross-validation fold (``None``: all training items against the held-out validation set).
        val_fraction: held-out share for validation.
        num_folds: number of folds the training items are dealt into.
        seed: split seed.
        layout: reader name or ``"auto"``.
        validate: check every pair first (leave on; off only for data checked elsewhere).
        sample_kwargs: passed to the sample maker (e.g. ``num_tiles``).

    Raises:
        ValueError: on an unknown task or split.
        attnseg_monai.data.DatasetError: listing every offending file and its problem.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(sorted(TASKS))}.")
    if split not in ("training", "validation", "all"):
        raise ValueError(f"split must be 'training', 'validation' or 'all', got {split!r}.")
    spec = TASKS[task]
    if embedded:
        items = spec.make_sample(dataset_dir, **sample_kwargs)
    else:
        items = read_dataset(dataset_dir, layout=layout)
    if validate:
        validate_pairs(
            items,
            expected_channels=spec.channels,
            label_values=spec.label_values,
            allow_empty_labels=spec.allow_empty_labels,
        )
    datalist = make_datalist(items, val_fraction=val_fraction, num_folds=num_folds, seed=seed)
    Path(datalist_file).parent.mkdir(parents=True, exist_ok=True)
    write_datalist(datalist, datalist_file)
    train, val = select_fold(datalist, fold)
    logger.info(
        "%s data in %s: %d training and %d validation items (datalist %s)",
        task,
        dataset_dir,
        len(train),
        len(val),
        datalist_file,
    )
    if split == "training":
        return train
    if split == "validation":
        return val
    return train + val


def inference_items(task: str, dataset_dir: str | os.PathLike, *, embedded: bool, **sample_kwargs: Any) -> list[dict]:
    """Images to segment: the embedded sample's images, one image file, or every image in a folder.

    A folder with an ``images/`` sub-folder is read from there (the layout the samples and most data sets use).

    Raises:
        ValueError: on an unknown task.
        FileNotFoundError: if ``dataset_dir`` does not exist or holds no image file.
    """
    from ..io.images import is_image_file, list_image_files

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(sorted(TASKS))}.")
    if embedded:
        return [{"image": item["image"]} for item in TASKS[task].make_sample(dataset_dir, **sample_kwargs)]
    root = Path(dataset_dir)
    if root.is_file():
        if not is_image_file(root):
            raise FileNotFoundError(f"{root}: not an image file this bundle reads.")
        return [{"image": str(root.resolve())}]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder.")
    folder = root / "images" if (root / "images").is_dir() else root
    files = list_image_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: holds no image file (png, jpg, tif).")
    return [{"image": str(p.resolve())} for p in files]
