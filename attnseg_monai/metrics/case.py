"""Per-case, per-class evaluation of two integer label maps: Dice, IoU, HD95, HD and ASD.

A thin layer over :func:`~attnseg_monai.metrics.confusion.class_scores` and
:class:`~attnseg_monai.metrics.surface_distance.SurfaceDistancePolicyMetric`, so one case scored here and the same
case scored by the bundles' metrics agree, empty-mask policy included. Meant for ``attnseg evaluate`` and for
Synapse-style per-organ tables (seed 003).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import get_confusion_matrix
from monai.networks.utils import one_hot

from .confusion import class_scores
from .surface_distance import STATUS_NAMES, SurfaceDistancePolicyMetric
from .utils import check_choice, spacing_from_meta

__all__ = ["EVALUATE_METRICS", "evaluate_case"]

#: metric names :func:`evaluate_case` knows
EVALUATE_METRICS = ("dice", "iou", "hd95", "hd", "asd")


def _as_label_map(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.as_subclass(torch.Tensor)
    else:
        arr = np.asarray(x)
        t = torch.as_tensor(arr.astype(np.int64) if arr.dtype.kind in "uib" else arr)
    if t.ndim >= 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim not in (2, 3):
        raise ValueError(f"{name} must be an integer label map (H, W[, D]) or (1, H, W[, D]), got {tuple(t.shape)}.")
    if t.is_floating_point():
        if not bool(torch.all(t == torch.round(t))):
            raise ValueError(f"{name} must hold integer class indices; apply argmax to probabilities first.")
    return t.long()


def evaluate_case(
    pred_labels: np.ndarray | torch.Tensor,
    gt_labels: np.ndarray | torch.Tensor,
    num_classes: int,
    spacing: float | Sequence[float] | None = None,
    metrics: Sequence[str] = ("dice", "iou", "hd95", "asd"),
    *,
    include_background: bool = False,
    both_empty: str = "exclude",
    one_empty: str = "max_distance",
    hd_mode: str = "max_of_directed",
) -> dict[str, Any]:
    """Score one case class by class.

    Dice ``2TP/(2TP+FP+FN)`` and IoU ``TP/(TP+FP+FN)`` follow :func:`class_scores`; HD95, HD and ASD follow
    :class:`SurfaceDistancePolicyMetric` (in the units of ``spacing``, mm for CT). A class absent from both maps is NaN
    under ``both_empty="exclude"`` for every metric (or 1 for Dice/IoU and 0 for distances under ``"perfect"``); a
    class absent from one map has Dice = IoU = 0 and the ``one_empty`` distance.

    Args:
        pred_labels: predicted class indices, (H, W[, D]) or (1, H, W[, D]), numpy or torch.
        gt_labels: reference class indices, the same shape.
        num_classes: number of classes including background (label values lie in ``0..num_classes-1``).
        spacing: voxel size, one number or one per axis; ``None`` reads a ``MetaTensor``'s affine or uses 1.
        metrics: any of :data:`EVALUATE_METRICS`.
        include_background: score class 0 too.
        both_empty: ``"exclude"`` or ``"perfect"``.
        one_empty: ``"max_distance"``, ``"nan"`` or ``"inf"`` (distances only).
        hd_mode: ``"max_of_directed"`` or ``"pooled"`` (see :class:`SurfaceDistancePolicyMetric`).

    Returns:
        ``{"classes": [c, ...], "status": [name, ...], <metric>: [value per class, ...], "mean": {<metric>: value}}``
        with Python floats (NaN where excluded); ``"mean"`` skips NaN (NaN if nothing is left), and ``status`` names the
        case of each class (:data:`STATUS_NAMES`).

    Raises:
        ValueError: for shapes that differ or are not label maps, labels outside ``0..num_classes-1``, an unknown
            metric, or an option the metrics reject.

    Example::

        # 2D
        out = evaluate_case(pred2d, gt2d, num_classes=2, spacing=(0.5, 0.5))
        # 3D CT, 9 Synapse classes (background + 8 organs), spacing (x, y, z) in mm
        out = evaluate_case(pred3d, gt3d, num_classes=9, spacing=(0.76, 0.76, 3.0))
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}.")
    metrics = tuple(check_choice("metrics", m, EVALUATE_METRICS) for m in metrics)
    if not metrics:
        raise ValueError(f"metrics must name at least one of {EVALUATE_METRICS}.")
    if spacing is None and isinstance(gt_labels, torch.Tensor):
        spacing = _meta_spacing(gt_labels)
    pred, gt = _as_label_map(pred_labels, "pred_labels"), _as_label_map(gt_labels, "gt_labels")
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred_labels and gt_labels must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}."
        )
    for name, t in (("pred_labels", pred), ("gt_labels", gt)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} values must lie in 0..{num_classes - 1}, got {int(t.min())}..{int(t.max())}.")
    p1 = one_hot(pred[None, None], num_classes)
    g1 = one_hot(gt[None, None], num_classes)
    start = 0 if include_background else 1
    out: dict[str, Any] = {"classes": list(range(start, num_classes))}
    counts = get_confusion_matrix(p1, g1, include_background=include_background)[0]
    present_p = counts[:, 0] + counts[:, 1] > 0
    present_t = counts[:, 0] + counts[:, 3] > 0
    codes = torch.where(present_p & present_t, 0, torch.where(present_t, 2, torch.where(present_p, 3, 1)))
    out["status"] = [STATUS_NAMES[int(c)] for c in codes]
    for m in metrics:
        if m in ("dice", "iou"):
            vals = class_scores(counts, m, both_empty)
        else:
            metric = SurfaceDistancePolicyMetric(
                m,
                include_background=include_background,
                both_empty=both_empty,
                one_empty=one_empty,
                hd_mode=hd_mode,
                reduction="none",
            )
            vals = metric(p1, g1, spacing=spacing)[0]
        out[m] = [float(v) for v in vals]
    out["mean"] = {m: _nanmean(out[m]) for m in metrics}
    return out


def _meta_spacing(x: torch.Tensor) -> tuple[float, ...] | None:
    dims = x.ndim - 1 if x.ndim >= 3 and x.shape[0] == 1 else x.ndim
    found = spacing_from_meta(x, 1, dims)
    return found[0] if found else None


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(sum(kept) / len(kept)) if kept else float("nan")
