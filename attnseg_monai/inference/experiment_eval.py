"""The evaluation side of ``attnseg experiment``: the validation cases every row is scored on, and each row's scoring.

- :func:`validation_items`: the bundle's own ``validate#datalist`` of ``train.json`` resolved in this process (with
  the experiment's ``--dataset_dir``, overrides and the table's ``configs``; the embedded sample is generated here,
  once, before trainings run in parallel; a bundle with a loader of its own, ``validate#load``, has its labels written
  in its classes first, e.g. danie's raw BTCV ids mapped to the 8 Synapse organs); :func:`labels_folder` links their
  labels under their image's name for ``attnseg evaluate``; :func:`same_split` checks that a row trained on that
  split.
- :func:`evaluate_row`: the row's ``model.pt`` (built from its record) segments the validation images through
  ``attnseg infer``'s predictor with the bundle's ``inference.json`` plus the row's ``evaluation`` configs, after an
  untimed warm-up image; :func:`~attnseg_monai.inference.evaluate.evaluate_folders` scores each case with the metrics
  of the bundle's ``evaluate.json`` (per region where the table names ``regions``). ``time_ms`` per case is the
  predictor's time for the image (the manifest's ``seconds``: network on the bundle's precision path,
  postprocessing, writing the mask; reading excluded). The result is kept in ``row_evaluation.json`` and reused
  while the model and the settings are the same.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_json, sha256_file
from ..io.suffixes import split_image_name
from .errors import ExperimentError
from .evaluate import _jsonable
from .experiment_spec import ExperimentRow
from .jobs import training_parser

__all__ = ["ROW_EVALUATION", "evaluate_row", "file_digest", "labels_folder", "same_split", "validation_items"]

logger = logging.getLogger(__name__)

#: a row's evaluation record (settings, per-case metrics, pooled metrics, failures)
ROW_EVALUATION = "row_evaluation.json"


def file_digest(path: Path) -> dict[str, str]:
    """``{"file": ..., "sha256": ...}`` of a config file (what a row's settings record)."""
    return {"file": str(path), "sha256": sha256_file(path)}


def _abs(path: str | os.PathLike) -> str:
    return str(Path(path).expanduser().absolute())


def validation_items(
    root: Path,
    folder: Path,
    dataset_dir: str | None,
    overrides: Mapping[str, Any],
    configs: Sequence[Path] = (),
) -> list[dict[str, Any]]:
    """The bundle's validation items (``validate#datalist`` of ``train.json`` with the table's ``configs`` layered on
    it, e.g. a 2D configuration of the bundle: the split every row trains with)."""
    parser = training_parser(root, folder, dataset_dir, overrides, configs)
    if "validate#datalist" not in parser:
        raise ExperimentError(f"{root / 'configs' / 'train.json'}: no 'validate#datalist' (the validation items).")
    items = list(parser.get_parsed_content("validate#datalist"))
    unlabelled = [str(i.get("image")) for i in items if not isinstance(i, dict) or not i.get("label")]
    if not items or unlabelled:
        raise ExperimentError(
            f"{folder / 'datalist.json'}: the validation items need an image and a label file each "
            f"({'no items' if not items else 'without label: ' + ', '.join(unlabelled[:3])})."
        )
    return _labels_in_classes(parser, items, folder / "class_labels")


def _labels_in_classes(parser: Any, items: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """The items with labels that hold the bundle's class values, as ``attnseg evaluate`` compares them.

    A bundle that loads its validation data with a transform of its own (``validate#load`` other than MONAI's
    ``LoadImaged``, e.g. DANIE's ``LoadSynapsed``: raw BTCV labels hold 13 organ ids that it maps to the 8 Synapse
    classes, and a TransUNet ``.npy.h5`` volume holds image and label in one file) has its labels loaded with it and
    written as ``folder/<image stem>.nii.gz`` (uint8, the source's NIfTI geometry, as the bundle writes its
    predictions); the items then name these files. Other bundles' items are returned as they are.
    """
    from monai.transforms import LoadImaged

    from ..io.nifti import SourceGeometryNibabelWriter

    if "validate#load" not in parser:
        return items
    load = parser.get_parsed_content("validate#load")
    if isinstance(load, LoadImaged) or not callable(load):
        return items
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    converted = []
    for item in items:
        target = folder / f"{split_image_name(item['image'])[0]}.nii.gz"
        if target.exists():
            raise ExperimentError(f"two validation images are named {target.name}: their predictions would collide.")
        label = load({"image": item["image"], "label": item["label"]})["label"]
        writer = SourceGeometryNibabelWriter(output_dtype=np.uint8)
        writer.set_data_array(label, channel_dim=0)
        writer.set_metadata(dict(getattr(label, "meta", {}) or {}), resample=False)
        writer.write(str(target))
        converted.append({**item, "label": str(target)})
    return converted


def labels_folder(items: Sequence[Mapping[str, Any]], folder: Path) -> Path:
    """``folder`` holding each validation label under its image's name (hard link, else copy)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for item in items:
        stem, ending = split_image_name(item["image"])[0], split_image_name(item["label"])[1]
        target = folder / f"{stem}{ending}"
        if target.exists():
            raise ExperimentError(f"two validation images are named {stem!r}: their predictions would collide.")
        try:
            os.link(item["label"], target)
        except OSError:
            shutil.copy2(item["label"], target)
    return folder


def same_split(row_dir: Path, items: Sequence[Mapping[str, Any]]) -> bool:
    try:
        listed = json.loads((row_dir / "train" / "datalist.json").read_text(encoding="utf-8"))["validation"]
    except (OSError, ValueError, KeyError, TypeError):
        return True  # a bundle that writes no datalist file: nothing to compare
    return sorted(_abs(i["image"]) for i in listed) == sorted(_abs(i["image"]) for i in items)


def evaluate_row(
    root: Path,
    row: ExperimentRow,
    model: Path,
    row_dir: Path,
    items: Sequence[Mapping[str, Any]],
    labels: Path,
    options: Mapping[str, Any],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment and score the validation cases with the row's model (see the module docstring); ``options``
    (``device``, ``precision``, ``eval_overrides``, ``regions``) are recorded with the result, which is reused while
    they, the model, the row's evaluation configs and the cases stay the same."""
    from .evaluate import evaluate_folders
    from .manifest import MANIFEST_NAME
    from .predictor import BundlePredictor

    images = [str(i["image"]) for i in items]
    settings = _jsonable(
        {
            "checkpoint_sha256": sha256_file(model),
            "evaluation": [file_digest(p) for p in row.evaluation],
            "cases": images,
            **options,
        }
    )
    record_file = row_dir / ROW_EVALUATION
    try:
        cached = json.loads(record_file.read_text(encoding="utf-8"))
        if cached.get("settings") == settings:
            logger.info("row %s: evaluated earlier with the same model and settings", row.id)
            return cached
    except (OSError, ValueError, AttributeError):
        pass
    overrides: dict[str, Any] = {}
    for path in row.evaluation:
        overrides.update(json.loads(path.read_text(encoding="utf-8")))
    overrides.update(options.get("eval_overrides") or {})
    predictor = BundlePredictor(device=options["device"], precision=options["precision"])
    predictor.from_bundle(str(root), checkpoint=str(model), trust_bundle=True, overrides=overrides or None)
    run = {"num_workers": 0, "rank": 0, "world_size": 1, "overwrite": True}
    warm, preds = row_dir / "warmup", row_dir / "predictions"
    for folder in (warm, preds):
        shutil.rmtree(folder, ignore_errors=True)
    predictor.predict_files(images[:1], warm, progress=False, **run)  # untimed: first-call costs
    shutil.rmtree(warm, ignore_errors=True)
    summary = predictor.predict_files(images, preds, progress=progress, **run)
    done = json.loads((preds / MANIFEST_NAME).read_text(encoding="utf-8")).get("cases", {})
    times = {k.lower(): 1000.0 * v["seconds"] for k, v in done.items() if v.get("seconds") is not None}
    regions = options.get("regions") or None
    result = evaluate_folders(preds, labels, bundle=str(root), output_dir=row_dir / "evaluation", regions=regions)
    cases = []
    for r in result.rows:
        if r["status"] == "ok":
            values = {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            cases.append({"case": r["case"], **values, **({"time_ms": times[r["case"]]} if r["case"] in times else {})})
    failures = [f"{f['input']}: {f['error']}" for f in summary.failed]
    failures += [f"{f['case']}: {f['error']}" for f in result.failures if f.get("prediction")]
    record = {"settings": settings, "cases": cases, "pooled": result.summary["dataset"], "failures": failures}
    atomic_write_json(record_file, _jsonable(record))
    return _jsonable(record)
