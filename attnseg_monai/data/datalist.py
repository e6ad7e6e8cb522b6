"""Seeded, machine-independent train/validation split with k folds, and an atomic datalist JSON writer.

The split depends only on the items' paths relative to their common folder, the seed and the fractions: the items
are sorted by that relative path, then ordered by the raw 64-bit outputs of a PCG64 bit generator seeded with
``seed`` (numpy guarantees that bit stream across versions and platforms, unlike the derived distributions). The
first ``round(n * val_fraction)`` items are the validation set; the rest are training items, item ``i`` of them in
fold ``i % num_folds``. The JSON layout is MONAI's decathlon datalist, readable with
:func:`monai.data.load_decathlon_datalist`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_json

__all__ = ["load_datalist", "make_datalist", "select_fold", "write_datalist"]

_PATH_KEYS = ("image", "label")


def _sort_keys(paths: Sequence[str]) -> list[str]:
    """Paths relative to their common folder, with '/' separators, so the order is the same on every machine."""
    absolute = [os.path.abspath(p) for p in paths]
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
    except ValueError:  # different drives on Windows
        common = ""
    return [PurePath(os.path.relpath(p, common) if common else p).as_posix() for p in absolute]


def make_datalist(
    items: Sequence[Mapping[str, Any]],
    val_fraction: float = 0.2,
    num_folds: int = 5,
    seed: int = 0,
    *,
    image_key: str = "image",
) -> dict[str, list[dict[str, Any]]]:
    """Split ``items`` into a fixed validation set and ``num_folds`` training folds.

    Args:
        items: datalist items (dicts with at least ``image_key``); other keys are kept. Any ``"fold"`` key is
            replaced.
        val_fraction: share of the items held out for validation, in [0, 1); at least one item is held out when
            the fraction is positive and there are two or more items.
        num_folds: number of folds the training items are dealt into (1 puts all of them in fold 0).
        seed: non-negative integer seed.
        image_key: the key whose path identifies an item.

    Returns:
        ``{"training": [... each with "fold": k], "validation": [...]}``, both sorted by relative image path.

    Raises:
        ValueError: for an empty list, items without ``image_key``, duplicate images, ``val_fraction`` outside
            [0, 1), ``num_folds < 1``, a negative seed, or fewer training items than folds.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if int(num_folds) != num_folds or num_folds < 1:
        raise ValueError(f"num_folds must be an integer >= 1, got {num_folds}.")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    if not items:
        raise ValueError("items is empty: read a data set first (read_dataset) or check the folder.")
    missing = [i for i, item in enumerate(items) if not isinstance(item, Mapping) or image_key not in item]
    if missing:
        raise ValueError(f"items {missing[:10]} are not dicts with an {image_key!r} key.")
    keys = _sort_keys([str(item[image_key]) for item in items])
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate images in items: {dupes[:10]}.")

    order = sorted(range(len(items)), key=keys.__getitem__)
    raw = np.random.Generator(np.random.PCG64(int(seed))).bit_generator.random_raw(len(order))
    shuffled = [order[i] for i in np.argsort(raw, kind="stable")]

    n = len(items)
    n_val = int(round(n * float(val_fraction)))
    if val_fraction > 0 and n_val == 0 and n >= 2:
        n_val = 1
    n_train = n - n_val
    if n_train < num_folds:
        raise ValueError(
            f"{n_train} training items cannot fill {num_folds} folds: lower num_folds (e.g. num_folds=1) or "
            "val_fraction, or add data."
        )
    validation = sorted(shuffled[:n_val], key=keys.__getitem__)
    training = shuffled[n_val:]
    fold_of = {index: position % int(num_folds) for position, index in enumerate(training)}
    return {
        "training": [{**dict(items[i]), "fold": fold_of[i]} for i in sorted(training, key=keys.__getitem__)],
        "validation": [{k: v for k, v in dict(items[i]).items() if k != "fold"} for i in validation],
    }


def select_fold(
    datalist: Mapping[str, Sequence[Mapping[str, Any]]], fold: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The (training, validation) items of one cross-validation round.

    With ``fold=None``: all training items, and the held-out ``validation`` list. With ``fold=k``: the training
    items outside fold ``k``, and those in fold ``k`` (the held-out ``validation`` list is then left for a final
    test).

    Raises:
        ValueError: if ``fold`` is not one of the folds present.
    """
    training = [dict(item) for item in datalist.get("training", [])]
    if fold is None:
        return training, [dict(item) for item in datalist.get("validation", [])]
    folds = sorted({int(item["fold"]) for item in training if "fold" in item})
    if fold not in folds:
        raise ValueError(f"fold {fold} not in the datalist; folds present: {folds}.")
    return [i for i in training if i.get("fold") != fold], [i for i in training if i.get("fold") == fold]


def write_datalist(
    datalist: Mapping[str, Any], path: str | os.PathLike, base_dir: str | os.PathLike | None = None
) -> Path:
    """Write ``datalist`` as JSON to ``path`` atomically.

    Args:
        datalist: e.g. the result of :func:`make_datalist`.
        path: the JSON file.
        base_dir: when given, ``image``/``label`` paths below it are written relative to it with '/' separators
            (load them back with ``load_decathlon_datalist(path, base_dir=base_dir)`` or :func:`load_datalist`).

    Returns:
        the path written.
    """

    def rel(value: Any) -> Any:
        if base_dir is None or not isinstance(value, str):
            return value
        absolute, base = os.path.abspath(value), os.path.abspath(base_dir)
        if os.path.commonpath([absolute, base]) != base:
            return value
        return PurePath(os.path.relpath(absolute, base)).as_posix()

    out: dict[str, Any] = {}
    for section, content in datalist.items():
        if isinstance(content, list):
            out[section] = [
                {k: rel(v) if k in _PATH_KEYS else v for k, v in item.items()} if isinstance(item, Mapping) else item
                for item in content
            ]
        else:
            out[section] = content
    return atomic_write_json(path, out)


def load_datalist(
    path: str | os.PathLike, base_dir: str | os.PathLike | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Read a datalist JSON; relative ``image``/``label`` paths are joined to ``base_dir`` (default: the file's
    folder).

    Raises:
        ValueError: if the file is not a JSON object.
    """
    file = Path(path)
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{file} is not a datalist (expected a JSON object with 'training'/'validation' lists).")
    base = Path(base_dir) if base_dir is not None else file.parent
    for content in data.values():
        if isinstance(content, list):
            for item in content:
                if isinstance(item, dict):
                    for key in _PATH_KEYS:
                        value = item.get(key)
                        if isinstance(value, str) and not os.path.isabs(value):
                            item[key] = str((base / value).absolute())
    return data
