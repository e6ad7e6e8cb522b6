"""``attnseg evaluate``: score a folder of predictions against a folder of labels, case by case.

The metrics follow the bundle's task, read from its ``evaluate.json`` (key metric, additional metrics, and handlers
that list their ``metrics``) and ``metadata.json`` as plain JSON (nothing is executed, so any bundle folder may be
named):

- instance tasks (the config scores AJI or PQ, e.g. hannet): the bundle's instance output is compared with instance
  labels; Dice/IoU/HD95/ASD on the foreground (``label > 0``) through
  :func:`~attnseg_monai.metrics.evaluate_case`, plus AJI and PQ per case;
- class tasks: :func:`~attnseg_monai.metrics.evaluate_case` per class (``num_classes`` from ``channel_def``; binary
  tasks read 0/255 masks as ``> 0``), plus MPA / MIoU / Mean_Dice / accuracy when the config reports them
  (per case, and pooled over the data set as the bundles compute them); with ``regions`` (nested structures, e.g.
  ``{"disc": [1, 2], "cup": [2]}``), each region, the union of its classes, is scored instead of each class.

Without a bundle, ``num_classes`` says how many classes the label maps hold (background included) and the metrics
default to Dice, IoU, HD95 and ASD. Distances are in the units of the files' spacing (mm for NIfTI/NRRD/DICOM,
pixels for PNG).

Pairing: a prediction ``<case>_<postfix>.<ext>`` pairs with the label whose stem, without a label suffix
(``_mask``, ``_label``, ...), is ``<case>`` (case-insensitive; endings may differ), by the data readers' rule
(:mod:`attnseg_monai.data.pairing`: leading role words are dropped too, so BTCV's ``img0001_seg`` pairs with
``label0001``). Predictions without a label and labels without a prediction are reported as failed cases.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import get_confusion_matrix
from monai.networks.utils import one_hot

from ..data.ct_labels import btcv_to_synapse8
from ..data.pairing import LABEL_SUFFIXES, image_key_candidates, label_key, pairing_key
from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..io.suffixes import split_image_name
from ..metrics import EVALUATE_METRICS, aji_counts, class_scores, evaluate_case, pq_counts
from .eval_task import EXTRA_METRICS, EvalTask, task_from_bundle
from .outputs import EXTRA_OUTPUTS
from .readers import read_image, supported_suffixes

__all__ = ["EXTRA_METRICS", "EvalTask", "EvaluationResult", "evaluate_folders", "task_from_bundle"]


@dataclass
class EvaluationResult:
    """Rows (one per case), the summary, and where they were written."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    failures: list[dict[str, str]]
    per_case_csv: Path
    summary_csv: Path
    summary_json: Path

    @property
    def ok(self) -> bool:
        return not self.failures


def _files(folder: Path) -> list[Path]:
    suffixes = set(supported_suffixes())
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and split_image_name(p)[1] in suffixes
    )


def _pred_key(stem: str, postfix: str | None) -> str | None:
    low = stem.lower()
    if postfix:
        ending = f"_{postfix.lower()}"
        return low[: -len(ending)] if low.endswith(ending) and len(low) > len(ending) else None
    for other in EXTRA_OUTPUTS:
        if low.endswith(f"_{other}"):
            return None
    if "_attention_" in low:
        return None
    return low


def _spacing(img: Any, dims: int) -> tuple[float, ...]:
    affine = getattr(img, "affine", None)
    if affine is None:
        return (1.0,) * dims
    a = np.asarray(affine, dtype=np.float64)
    return tuple(float(np.linalg.norm(a[:dims, i])) or 1.0 for i in range(dims))


#: accepted values of ``label_mapping`` (``attnseg evaluate --label_mapping``)
LABEL_MAPPINGS = ("none", "btcv")


def _as_map(img: Any, name: str, path: Path) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(img))
    if t.ndim >= 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 3 and t.shape[-1] in (3, 4) and t.shape[0] > 4 and t.shape[1] > 4:
        raise ValueError(f"{path.name}: {name} has {t.shape[-1]} colour channels; expected a single-channel label map")
    return t


def _nan_stats(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    kept = arr[~np.isnan(arr)]
    if not kept.size:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "min": math.nan, "max": math.nan, "count": 0}
    return {
        "mean": float(kept.mean()),
        "std": float(kept.std()),
        "median": float(np.median(kept)),
        "min": float(kept.min()),
        "max": float(kept.max()),
        "count": int(kept.size),
    }


def evaluate_folders(
    pred_dir: str | os.PathLike,
    label_dir: str | os.PathLike,
    *,
    bundle: str | os.PathLike | None = None,
    num_classes: int | None = None,
    metrics: Sequence[str] | str | None = None,
    pred_postfix: str | None = None,
    output_dir: str | os.PathLike | None = None,
    include_background: bool = False,
    regions: Mapping[str, Sequence[int]] | None = None,
    label_mapping: str = "none",
) -> EvaluationResult:
    """Score every prediction in ``pred_dir`` against its label in ``label_dir``; write CSVs and a JSON summary.

    Args:
        pred_dir: the predictions (e.g. the output folder of ``attnseg infer``).
        label_dir: the reference label maps.
        bundle: bundle whose task decides metrics, classes and which output to read.
        num_classes: classes including background (needed without ``bundle``; overrides the bundle's).
        metrics: metrics to compute (``dice, iou, hd95, hd, asd`` and ``aji, pq, mpa, miou, mean_dice, acc``).
        pred_postfix: read only ``<case>_<postfix>.*`` predictions (default: the bundle's label output).
        output_dir: where ``metrics.csv``, ``summary.csv`` and ``summary.json`` go (default ``<pred_dir>/evaluation``).
        include_background: score class 0 too (``evaluate_case`` metrics).
        regions: score these unions of class values instead of each class (``{"disc": [1, 2], "cup": [2]}``):
            columns ``<metric>_<region>``, and ``<metric>_mean`` over the regions.
        label_mapping: ``"none"`` (label values are class values) or ``"btcv"`` (raw BTCV labels: organ ids 0..13
            mapped to the 8 Synapse classes the DANIE bundle predicts, :func:`~attnseg_monai.data.btcv_to_synapse8`).

    Raises:
        ValueError: without ``bundle`` and ``num_classes``, for unknown metrics, missing folders, or regions that are
            not non-empty lists of class values below ``num_classes``, or an unknown ``label_mapping``.
    """
    preds, labels = Path(pred_dir), Path(label_dir)
    for folder, what in ((preds, "prediction"), (labels, "label")):
        if not folder.is_dir():
            raise ValueError(f"{what} folder {folder} does not exist.")
    if bundle is not None:
        task = task_from_bundle(bundle)
    elif num_classes is None:
        raise ValueError("give --bundle (the task's metrics and classes) or --num_classes (background included).")
    else:
        task = EvalTask(num_classes=int(num_classes))
    if num_classes is not None:
        task.num_classes = int(num_classes)
    if task.num_classes < 2:
        raise ValueError(f"num_classes counts background and must be >= 2, got {task.num_classes}.")
    if metrics is not None:
        names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
        unknown = [m for m in names if m not in EVALUATE_METRICS + EXTRA_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {EVALUATE_METRICS + EXTRA_METRICS}.")
        task.metrics = tuple(m for m in names if m in EVALUATE_METRICS)
        task.extra = tuple(m for m in names if m in EXTRA_METRICS)
        if not task.metrics:
            task.metrics = ("dice",)
    if pred_postfix is not None:
        task.pred_postfix = pred_postfix or None
    task.include_background = bool(include_background)
    if label_mapping not in LABEL_MAPPINGS:
        raise ValueError(f"label_mapping must be one of {LABEL_MAPPINGS}, got {label_mapping!r}.")
    task.label_mapping = label_mapping
    if regions:
        task.regions = _check_regions(regions, task.num_classes)

    label_index: dict[str, list[Path]] = {}
    for p in _files(labels):
        stem = split_image_name(p)[0]
        for key in {stem.lower(), pairing_key(stem, LABEL_SUFFIXES), label_key(stem)}:
            label_index.setdefault(key, []).append(p)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    used: set[Path] = set()
    pooled = None
    for pred in _files(preds):
        key = _pred_key(split_image_name(pred)[0], task.pred_postfix)
        if key is None:
            continue
        found = next((label_index[k] for k in image_key_candidates(key) if k in label_index), [])
        found = sorted(set(found))
        row: dict[str, Any] = {"case": key, "prediction": str(pred), "label": "", "status": "ok", "error": ""}
        try:
            if not found:
                raise ValueError("no label with this case name")
            if len(found) > 1:
                raise ValueError(f"several labels match: {', '.join(p.name for p in found)}")
            label = found[0]
            used.add(label)
            row["label"] = str(label)
            counts = _score(pred, label, task, row)
            pooled = counts if pooled is None else pooled + counts
        except Exception as exc:  # noqa: BLE001 - one bad pair does not stop the evaluation
            row["status"], row["error"] = "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            failures.append({"case": key, "prediction": str(pred), "error": row["error"]})
        rows.append(row)
    for label in _files(labels):
        if label not in used and not any(r["label"] == str(label) for r in rows):
            key = label_key(split_image_name(label)[0])
            if any(r["case"] == key for r in rows):
                continue
            rows.append(
                {
                    "case": key,
                    "prediction": "",
                    "label": str(label),
                    "status": "failed",
                    "error": "no prediction for this label",
                }
            )
            failures.append({"case": key, "prediction": "", "error": "no prediction for this label"})
    return _write_results(rows, failures, task, pooled, Path(output_dir) if output_dir else preds / "evaluation")


def _score(pred_path: Path, label_path: Path, task: EvalTask, row: dict[str, Any]) -> torch.Tensor | None:
    pred_img = read_image(pred_path, dtype=None)
    label_img = read_image(label_path, dtype=None)
    pred, gt = _as_map(pred_img, "prediction", pred_path), _as_map(label_img, "label", label_path)
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(gt.shape)} differ in shape")
    spacing = _spacing(label_img, gt.ndim)
    if task.label_mapping == "btcv":
        gt = btcv_to_synapse8(gt)
    elif task.mode == "classes" and task.num_classes == 9 and gt.numel() and 8 < int(gt.max()) <= 13:
        raise ValueError(
            f"label values 0..{int(gt.max())} but the task has 9 classes (0..8): raw BTCV organ ids? "
            "pass --label_mapping btcv (maps them to the 8 Synapse classes)"
        )
    if task.mode == "instances":
        inst_p, inst_g = pred.long(), gt.long()
        pred_c, gt_c = (inst_p > 0).long(), (inst_g > 0).long()
    else:
        pred_c, gt_c = pred.long(), gt.long()
        if task.num_classes == 2:
            pred_c, gt_c = (pred_c > 0).long(), (gt_c > 0).long()
    if task.regions:
        _score_regions(pred_c, gt_c, spacing, task, row)
    else:
        out = evaluate_case(
            pred_c,
            gt_c,
            task.num_classes,
            spacing=spacing,
            metrics=task.metrics,
            include_background=task.include_background,
            hd_mode=task.hd_mode,
        )
        for m in task.metrics:
            for c, v in zip(out["classes"], out[m]):
                row[f"{m}_{task.class_names.get(c, c)}"] = v
            row[f"{m}_mean"] = out["mean"][m]
    counts = None
    if task.mode == "instances":
        if "aji" in task.extra:
            c, u = aji_counts(inst_p.numpy(), inst_g.numpy())
            row["aji"] = c / u if u else math.nan
        if "pq" in task.extra:
            tp, fp, fn, siou = pq_counts(inst_p.numpy(), inst_g.numpy())
            den = tp + 0.5 * fp + 0.5 * fn
            row["pq"] = siou / den if den else math.nan
    if any(m in task.extra for m in ("mpa", "miou", "mean_dice", "acc")):
        p1 = one_hot(pred_c[None, None], task.num_classes)
        g1 = one_hot(gt_c[None, None], task.num_classes)
        counts = get_confusion_matrix(p1, g1, include_background=True)[0].to(torch.float64)
        _confusion_scores(counts, task, row, prefix="")
    return counts


def _check_regions(regions: Mapping[str, Sequence[int]], num_classes: int) -> dict[str, tuple[int, ...]]:
    checked: dict[str, tuple[int, ...]] = {}
    for name, values in dict(regions).items():
        ids = tuple(values) if isinstance(values, Sequence) and not isinstance(values, str) else ()
        if not ids or any(isinstance(v, bool) or not isinstance(v, int) or not 0 < v < num_classes for v in ids):
            raise ValueError(
                f"region {name!r} must list class values in 1..{num_classes - 1} (e.g. [1, 2]), got {values!r}."
            )
        checked[str(name)] = ids
    return checked


def _score_regions(pred: torch.Tensor, gt: torch.Tensor, spacing: Any, task: EvalTask, row: dict[str, Any]) -> None:
    """Each region of ``task.regions`` scored as a binary map (the union of its classes), and the mean over them."""
    values: dict[str, list[float]] = {m: [] for m in task.metrics}
    for name, ids in task.regions.items():
        inside = torch.tensor(ids)
        out = evaluate_case(
            torch.isin(pred, inside).long(),
            torch.isin(gt, inside).long(),
            2,
            spacing=spacing,
            metrics=task.metrics,
            hd_mode=task.hd_mode,
        )
        for m in task.metrics:
            row[f"{m}_{name}"] = out[m][0]
            values[m].append(out[m][0])
    for m, found in values.items():
        kept = [v for v in found if not math.isnan(v)]
        row[f"{m}_mean"] = sum(kept) / len(kept) if kept else math.nan


def _confusion_scores(counts: torch.Tensor, task: EvalTask, row: dict[str, Any], prefix: str) -> None:
    def nanmean(t: torch.Tensor) -> float:
        kept = t[~torch.isnan(t)]
        return float(kept.mean()) if kept.numel() else math.nan

    if "mpa" in task.extra:
        row[f"{prefix}mpa"] = nanmean(class_scores(counts, "precision"))
    if "miou" in task.extra:
        row[f"{prefix}miou"] = nanmean(class_scores(counts, "iou"))
    if "mean_dice" in task.extra:
        row[f"{prefix}mean_dice"] = nanmean(class_scores(counts, "dice"))
    if "acc" in task.extra:
        total = float((counts[:, 0] + counts[:, 3]).sum())
        row[f"{prefix}acc"] = float(counts[:, 0].sum()) / total if total else math.nan


def _write_results(
    rows: list[dict[str, Any]],
    failures: list[dict[str, str]],
    task: EvalTask,
    pooled: torch.Tensor | None,
    out_dir: Path,
) -> EvaluationResult:
    fixed = ["case", "prediction", "label", "status", "error"]
    metric_cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in fixed and k not in metric_cols:
                metric_cols.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fixed + metric_cols, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    stats = {c: _nan_stats([r[c] for r in rows if r["status"] == "ok" and c in r]) for c in metric_cols}
    dataset: dict[str, float] = {}
    if pooled is not None:
        _confusion_scores(pooled, task, dataset, prefix="")
    summary = {
        "task": task.as_dict(),
        "cases": len(rows),
        "evaluated": sum(r["status"] == "ok" for r in rows),
        "failed": len(failures),
        "metrics": stats,
        "dataset": dataset,
        "failures": failures,
    }
    sbuf = io.StringIO()
    swriter = csv.writer(sbuf, lineterminator="\n")
    swriter.writerow(["metric", "mean", "std", "median", "min", "max", "count"])
    for name, s in stats.items():
        swriter.writerow([name] + [f"{s[k]:.6g}" if isinstance(s[k], float) else s[k] for k in list(s)])
    for name, v in dataset.items():
        swriter.writerow([f"{name}_dataset", f"{v:.6g}", "", "", "", "", ""])
    out_dir.mkdir(parents=True, exist_ok=True)
    per_case = atomic_write_bytes(out_dir / "metrics.csv", buf.getvalue().encode("utf-8"))
    summary_csv = atomic_write_bytes(out_dir / "summary.csv", sbuf.getvalue().encode("utf-8"))
    summary_json = atomic_write_json(out_dir / "summary.json", _jsonable(summary))
    return EvaluationResult(rows, summary, failures, per_case, summary_csv, summary_json)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
