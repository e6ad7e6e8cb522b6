"""Per-organ scores of Synapse multi-organ CT and the tables Synapse papers print (DANIE, seed 003).

Per volume: Dice, HD95 (and IoU, ASD) of the 8 organs (:func:`synapse_case_scores`, on top of
:func:`~attnseg_monai.metrics.evaluate_case`), with an empty-organ policy (the project's ``"exclude"`` or TransUNet's
``"transunet"``). Over cases: :func:`synapse_summary` (per-organ mean, standard deviation, status counts, the mean
over organs), :func:`synapse_csv_tables` (``per_case.csv``, ``summary.csv``) and :func:`synapse_table_markdown`
(mean DSC, HD95, the Dice of each organ). The ignite handler that fills and writes them during an evaluation is
:class:`attnseg_monai.handlers.SynapseTableHandler`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..data.ct_labels import SYNAPSE_CLASSES
from .case import evaluate_case

__all__ = [
    "EMPTY_POLICIES",
    "EMPTY_STATUSES",
    "SYNAPSE_METRICS",
    "synapse_case_scores",
    "synapse_csv_tables",
    "synapse_summary",
    "synapse_table_markdown",
]

#: the scores a Synapse table can hold
SYNAPSE_METRICS: tuple[str, ...] = ("dice", "hd95", "iou", "asd")
#: how empty organs are scored, see :func:`synapse_case_scores`
EMPTY_POLICIES: tuple[str, ...] = ("exclude", "transunet")
#: what each organ of a case can be: scored, or empty in the label, the prediction or both
EMPTY_STATUSES: tuple[str, ...] = ("evaluated", "both_empty", "pred_empty", "gt_empty")


def synapse_case_scores(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    *,
    spacing: float | Sequence[float] | None = None,
    metrics: Sequence[str] = SYNAPSE_METRICS,
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
    bad = [m for m in metrics if m not in SYNAPSE_METRICS]
    if bad or not metrics:
        raise ValueError(f"metrics must name some of {SYNAPSE_METRICS}, got {tuple(metrics)}.")
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


def synapse_summary(
    rows: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = SYNAPSE_METRICS,
    empty_policy: str = "exclude",
    hd_mode: str = "pooled",
) -> dict[str, Any]:
    """Per-organ means, standard deviations and status counts over the case rows, and the means over organs.

    Args:
        rows: one mapping per case with ``<metric>_<organ>`` values, ``status_<organ>``, ``distance_units`` and
            ``_organs`` (the organ names), as :class:`~attnseg_monai.handlers.SynapseTableHandler` scores them.
        metrics: the metrics of the rows.
        empty_policy: the policy the rows were scored with (recorded).
        hd_mode: the HD95 mode the rows were scored with (recorded).

    Returns:
        ``{"cases", "organs", "metrics", "empty_policy", "hd_mode", "distance_units", "per_organ": {organ:
        {<metric>: {"mean", "std", "n"}, "status_counts": {...}}}, "mean": {<metric>: mean over organs}}``; the
        ``mean`` is the mean over organs of the organ means (NaN skipped), the "Average" column of TransUNet-style
        tables.
    """
    organs = list(rows[0]["_organs"]) if rows else list(SYNAPSE_CLASSES[1:])
    units = sorted({r["distance_units"] for r in rows}) or ["mm"]
    per_organ: dict[str, Any] = {}
    for organ in organs:
        entry: dict[str, Any] = {}
        for m in metrics:
            values = [float(r[f"{m}_{organ}"]) for r in rows]
            entry[m] = {
                "mean": _nanmean(values),
                "std": _nanstd(values),
                "n": sum(not math.isnan(v) for v in values),
            }
        statuses = [r[f"status_{organ}"] for r in rows]
        entry["status_counts"] = {s: statuses.count(s) for s in EMPTY_STATUSES}
        per_organ[organ] = entry
    mean = {m: _nanmean([per_organ[o][m]["mean"] for o in organs]) for m in metrics}
    return {
        "cases": len(rows),
        "organs": organs,
        "metrics": list(metrics),
        "empty_policy": empty_policy,
        "hd_mode": hd_mode,
        "distance_units": units[0] if len(units) == 1 else "mixed",
        "per_organ": per_organ,
        "mean": mean,
    }


def synapse_csv_tables(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> dict[str, str]:
    """The text of ``per_case.csv`` and ``summary.csv`` for the case rows and their :func:`synapse_summary`.

    - ``per_case.csv``: one row per volume: ``case``, ``<metric>_<organ>`` for every metric and organ,
      ``<metric>_mean`` (mean over the organs scored in that case), ``status_<organ>`` (``evaluated``,
      ``both_empty``, ``pred_empty``, ``gt_empty``), ``distance_units`` and ``source``;
    - ``summary.csv``: one row per organ and a last ``mean`` row: per metric the mean and standard deviation over
      cases (NaN skipped) and how many cases each empty-organ status had; the ``mean`` row holds the means over
      organs.

    Floats are written with 6 decimals (``nan`` for NaN), rows end with ``\\r\\n`` (the ``csv`` module's dialect).
    """
    organs, metrics = summary["organs"], summary["metrics"]
    columns = ["case"]
    columns += [f"{m}_{o}" for m in metrics for o in organs] + [f"{m}_mean" for m in metrics]
    columns += [f"status_{o}" for o in organs] + ["distance_units", "source"]
    summary_columns = ["organ"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    summary_columns += list(EMPTY_STATUSES)
    table = []
    for organ in organs:
        entry = summary["per_organ"][organ]
        line: dict[str, Any] = {"organ": organ, **entry["status_counts"]}
        for m in metrics:
            line[f"{m}_mean"], line[f"{m}_std"] = entry[m]["mean"], entry[m]["std"]
        table.append(line)
    table.append({"organ": "mean", **{f"{m}_mean": summary["mean"][m] for m in metrics}})
    return {
        "per_case.csv": _csv_text(columns, [{c: r[c] for c in columns} for r in rows]),
        "summary.csv": _csv_text(summary_columns, table),
    }


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=list(columns), restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (_fmt(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    return handle.getvalue()


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def synapse_table_markdown(summary: Mapping[str, Any], title: str = "DANIE") -> str:
    """The table Synapse papers print: mean DSC (%) and HD95, then the Dice (%) of each organ.

    Args:
        summary: the ``summary.json`` content (:func:`synapse_summary`), written by
            :class:`~attnseg_monai.handlers.SynapseTableHandler`.
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
