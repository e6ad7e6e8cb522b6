"""Instance-level metrics for nuclei segmentation: Aggregated Jaccard Index and panoptic quality.

The Han-Net seed (000) names no metric (it says only that Han-Net beat the compared models on a public multi-organ
data set); Dice, IoU, AJI and PQ are our choice, the usual metrics of MoNuSeg. AJI is defined by Kumar et al., "A
Dataset and a Technique for Generalized Nuclear Segmentation for Computational Pathology", IEEE TMI 36(7), 2017. AJI+
(unique matching) is the variant of Graham et al., "Hover-Net", Medical Image Analysis 58, 2019. PQ is MONAI's
:class:`~monai.metrics.PanopticQualityMetric`, wrapped here so that it takes the same single-channel instance maps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric, PanopticQualityMetric
from monai.utils import MetricReduction, optional_import

from .utils import check_choice

linear_sum_assignment, _ = optional_import("scipy.optimize", name="linear_sum_assignment")

__all__ = ["AggregatedJaccardIndex", "InstancePanopticQualityMetric", "aji_counts", "pq_counts"]

_REDUCTIONS = ("image", "dataset")
_VARIANTS = ("aji", "aji_plus")


def _relabel(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Map instance ids onto ``0..n-1`` keeping 0 as background; return the flat map and ``n``."""
    ids, inverse = np.unique(x.ravel(), return_inverse=True)
    if ids.size == 0 or ids[0] != 0:
        return inverse.astype(np.int64) + 1, ids.size + 1
    return inverse.astype(np.int64), ids.size


class _Overlap(NamedTuple):
    """Sparse contingency table of two instance maps: one row per overlapping (gt, pred) pair."""

    pair_g: np.ndarray  # relabelled gt id of each pair
    pair_p: np.ndarray  # relabelled pred id of each pair
    inter: np.ndarray  # |G & S| of each pair
    union: np.ndarray  # |G | S| of each pair
    area_g: np.ndarray  # area of every relabelled gt id (index 0: background)
    area_p: np.ndarray  # area of every relabelled pred id


def _overlap(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> _Overlap:
    p = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    g = gt.detach().cpu().numpy() if isinstance(gt, torch.Tensor) else np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}.")
    if (p.size and p.min() < 0) or (g.size and g.min() < 0):
        raise ValueError("instance ids must be >= 0 (0 is background).")
    g_flat, n_g = _relabel(g)
    p_flat, n_p = _relabel(p)
    area_g = np.bincount(g_flat, minlength=n_g)
    area_p = np.bincount(p_flat, minlength=n_p)
    both = (g_flat > 0) & (p_flat > 0)
    codes, inter = np.unique(g_flat[both] * n_p + p_flat[both], return_counts=True)
    pair_g, pair_p = codes // n_p, codes % n_p
    union = area_g[pair_g] + area_p[pair_p] - inter
    return _Overlap(pair_g, pair_p, inter, union, area_g, area_p)


def aji_counts(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, variant: str = "aji") -> tuple[int, int]:
    """The aggregated intersection ``C`` and union ``U`` of one pair of instance label maps (``AJI = C / U``).

    Kumar et al. (2017): for every ground-truth instance ``G_i`` take the predicted instance ``S_j`` with the largest
    IoU (the lowest id on a tie; none if no predicted instance overlaps it), add ``|G_i & S_j|`` to ``C`` and
    ``|G_i | S_j|`` to ``U`` (``|G_i|`` if none overlaps); then add the area of every predicted instance that was never
    picked to ``U``. A predicted instance may be picked by several ground-truth instances (the original definition).
    ``variant="aji_plus"`` pairs instances one-to-one by maximal total IoU instead (Hover-Net's AJI+), and adds every
    unpaired instance of either map to ``U``.

    The contingency table of the two maps is built with one ``np.unique`` over pixel pairs (sparse: only pairs that
    overlap), so the cost is linear in the number of pixels and overlapping pairs.

    Args:
        pred: predicted instance ids, any shape; 0 is background, every other value one instance.
        gt: ground-truth instance ids, the same shape.
        variant: ``"aji"`` (Kumar 2017) or ``"aji_plus"`` (one-to-one matching).

    Returns:
        ``(C, U)`` in pixels (voxels). ``U == 0`` exactly when both maps are empty.

    Raises:
        ValueError: when the shapes differ, ids are negative, or ``variant`` is unknown.
    """
    variant = check_choice("variant", variant, _VARIANTS)
    ov = _overlap(pred, gt)
    gt_total, pred_total = int(ov.area_g[1:].sum()), int(ov.area_p[1:].sum())
    if ov.inter.size == 0:
        return 0, gt_total + pred_total
    iou = ov.inter / ov.union
    if variant == "aji":
        # sort by gt id, then IoU descending, then pred id: the first row of every gt id is its best match
        order = np.lexsort((ov.pair_p, -iou, ov.pair_g))
        first = np.ones(order.size, dtype=bool)
        first[1:] = ov.pair_g[order][1:] != ov.pair_g[order][:-1]
        sel = order[first]
        matched_g, used_p = ov.pair_g[sel], np.unique(ov.pair_p[sel])
    else:
        rows, row_idx = np.unique(ov.pair_g, return_inverse=True)
        cols, col_idx = np.unique(ov.pair_p, return_inverse=True)
        table = np.zeros((rows.size, cols.size))
        table[row_idx, col_idx] = iou
        pair_index = np.full((rows.size, cols.size), -1, dtype=np.int64)
        pair_index[row_idx, col_idx] = np.arange(iou.size)
        r, k = linear_sum_assignment(-table)
        keep = table[r, k] > 0
        sel = pair_index[r[keep], k[keep]]
        matched_g, used_p = rows[r[keep]], cols[k[keep]]
    c = int(ov.inter[sel].sum())
    u = int(ov.union[sel].sum()) + gt_total - int(ov.area_g[matched_g].sum())
    u += pred_total - int(ov.area_p[used_p].sum())
    return c, u


def pq_counts(
    pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, match_iou_threshold: float = 0.5
) -> tuple[int, int, int, float]:
    """``(TP, FP, FN, sum of IoU over TP)`` of two instance maps, as MONAI's ``compute_panoptic_quality`` counts them.

    Instances pair when their IoU is above ``match_iou_threshold``; for thresholds >= 0.5 such pairs are unique, so
    they are read straight off the sparse contingency table of :func:`aji_counts` (linear in the pixel count, where
    MONAI's loop over instances costs one full-image pass per instance).

    Args:
        pred: predicted instance ids, any shape; 0 is background.
        gt: ground-truth instance ids, the same shape.
        match_iou_threshold: in [0.5, 1].

    Raises:
        ValueError: for a threshold outside [0.5, 1], shapes that differ, or negative ids.
    """
    if not 0.5 <= float(match_iou_threshold) <= 1.0:
        raise ValueError(f"match_iou_threshold must lie in [0.5, 1] here, got {match_iou_threshold!r}.")
    ov = _overlap(pred, gt)
    iou = ov.inter / np.maximum(ov.union, 1)
    matched = iou > match_iou_threshold
    tp = int(matched.sum())
    n_gt = int((ov.area_g[1:] > 0).sum())
    n_pred = int((ov.area_p[1:] > 0).sum())
    return tp, n_pred - tp, n_gt - tp, float(iou[matched].sum())


class AggregatedJaccardIndex(CumulativeIterationMetric):
    """Aggregated Jaccard Index (AJI) of instance label maps, as a MONAI cumulative metric.

    Kumar et al., "A Dataset and a Technique for Generalized Nuclear Segmentation for Computational Pathology",
    IEEE TMI 2017; the usual instance metric of MoNuSeg, Han-Net's task (the Han-Net seed, 000, names no metric: using
    AJI there is our choice). See :func:`aji_counts` for the matching rule.

    Every call buffers ``(C, U)`` per image (shape ``(B, 2)``, float64); :meth:`aggregate` reduces them:

    - ``reduction="image"`` (default, as MoNuSeg tables): the mean over images of ``C_k / U_k``.
    - ``reduction="dataset"``: ``sum_k C_k / sum_k U_k`` (one aggregate over all images).

    Edge cases: an image whose ground truth and prediction both hold no instance has ``U = 0``; its AJI is
    undefined, set to NaN, left out of the mean and counted (``get_not_nans=True`` returns the number of images
    that did count). Ground truth empty but prediction not (or the reverse) gives ``C = 0 < U``: AJI 0.

    Args:
        reduction: ``"image"`` or ``"dataset"``, as above.
        variant: ``"aji"`` (Kumar 2017, the default) or ``"aji_plus"`` (one-to-one matching, Hover-Net).
        get_not_nans: if True, :meth:`aggregate` returns ``(aji, not_nans)``.

    Raises:
        ValueError: for an unknown ``reduction`` or ``variant``; in a call, when inputs are not ``(B, 1, H, W[, D])``
            of the same shape.

    Example::

        # 2D: instance maps (B, 1, H, W)
        metric = AggregatedJaccardIndex()
        metric(y_pred=torch.randint(0, 4, (2, 1, 32, 32)), y=torch.randint(0, 4, (2, 1, 32, 32)))
        aji = metric.aggregate()
        # 3D: (B, 1, H, W, D), one value over the whole data set
        metric = AggregatedJaccardIndex(reduction="dataset")
        metric(y_pred=torch.randint(0, 3, (1, 1, 8, 8, 8)), y=torch.randint(0, 3, (1, 1, 8, 8, 8)))
        aji = metric.aggregate()
    """

    def __init__(self, reduction: str = "image", variant: str = "aji", get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, _REDUCTIONS)
        self.variant = check_choice("variant", variant, _VARIANTS)
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("AggregatedJaccardIndex needs the ground truth y.")
        if y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
        if y_pred.ndim not in (4, 5) or y_pred.shape[1] != 1:
            raise ValueError(
                f"expected instance label maps of shape (B, 1, H, W[, D]), got {tuple(y_pred.shape)}; "
                "convert one-hot or multi-channel data to one integer instance map per image first."
            )
        out = [aji_counts(p[0], t[0], self.variant) for p, t in zip(y_pred, y)]
        return torch.as_tensor(out, dtype=torch.float64, device=y_pred.device).reshape(-1, 2)

    def per_image(self) -> torch.Tensor:
        """AJI of every buffered image, shape ``(N,)``; NaN where both maps were empty."""
        data = self._counts()
        c, u = data[:, 0], data[:, 1]
        return torch.where(u > 0, c / u.clamp_min(1), torch.full_like(c, float("nan")))

    def _counts(self) -> torch.Tensor:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("nothing to aggregate: call the metric on some data first.")
        return data

    def aggregate(self, reduction: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered counts; see the class docstring.

        Args:
            reduction: overrides the constructor's ``reduction`` (``"image"`` or ``"dataset"``).
        """
        mode = self.reduction if reduction is None else check_choice("reduction", reduction, _REDUCTIONS)
        data = self._counts()
        counted = data[:, 1] > 0
        not_nans = counted.sum().to(torch.float64)
        if mode == "dataset":
            u = data[:, 1].sum()
            value = data[:, 0].sum() / u if u > 0 else torch.tensor(float("nan"), dtype=torch.float64)
        else:
            per = self.per_image()
            value = per[counted].mean() if bool(counted.any()) else torch.tensor(float("nan"), dtype=torch.float64)
        return (value, not_nans) if self.get_not_nans else value


class InstancePanopticQualityMetric(PanopticQualityMetric):
    """MONAI's panoptic quality (PQ, SQ or RQ) for single-class instance label maps ``(B, 1, H, W[, D])``.

    :class:`~monai.metrics.PanopticQualityMetric` (Kirillov et al., "Panoptic Segmentation", CVPR 2019) takes two
    channels, instance ids and class ids. Nuclei have one class, so this wrapper takes the instance map alone:
    instances pair when their IoU exceeds ``match_iou_threshold`` (0.5), and
    ``PQ = sum(IoU of pairs) / (TP + FP / 2 + FN / 2)``, ``SQ = sum(IoU of pairs) / TP``, ``RQ = TP / (TP + FP / 2 +
    FN / 2)``. For thresholds >= 0.5 the per-image counts come from :func:`pq_counts` (the same numbers as MONAI's,
    about 100 times faster on a 1000x1000 tile with 600 nuclei); below 0.5 MONAI's assignment code runs. Buffering
    and :meth:`aggregate` are MONAI's. With the default
    ``reduction="mean_batch"`` the TP/FP/FN/IoU sums are averaged over images before the ratio, which equals one PQ over
    the whole data set; ``reduction="none"`` gives one value per image.

    Args:
        metric_name: ``"pq"``, ``"sq"``, ``"rq"`` or a sequence of them.
        reduction: a MONAI reduction applied to the buffered ``(tp, fp, fn, iou_sum)``.
        match_iou_threshold: IoU above which two instances pair.
        smooth_numerator: MONAI's small constant in the denominators.

    Raises:
        ValueError: in a call, when inputs are not ``(B, 1, H, W[, D])`` of the same shape.

    Example::

        # 2D
        pq = InstancePanopticQualityMetric()
        pq(y_pred=torch.randint(0, 4, (2, 1, 32, 32)), y=torch.randint(0, 4, (2, 1, 32, 32)))
        value = pq.aggregate()  # shape (1,): one class
        # 3D, PQ and SQ
        pq = InstancePanopticQualityMetric(metric_name=("pq", "sq"))
        pq(y_pred=torch.randint(0, 3, (1, 1, 8, 8, 8)), y=torch.randint(0, 3, (1, 1, 8, 8, 8)))
        pq_value, sq_value = pq.aggregate()
    """

    def __init__(
        self,
        metric_name: str | tuple[str, ...] = "pq",
        reduction: MetricReduction | str = MetricReduction.MEAN_BATCH,
        match_iou_threshold: float = 0.5,
        smooth_numerator: float = 1e-6,
    ) -> None:
        super().__init__(
            num_classes=1,
            metric_name=metric_name,
            reduction=reduction,
            match_iou_threshold=match_iou_threshold,
            smooth_numerator=smooth_numerator,
        )

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
        if y_pred.ndim not in (4, 5) or y_pred.shape[1] != 1:
            raise ValueError(f"expected instance label maps of shape (B, 1, H, W[, D]), got {tuple(y_pred.shape)}.")
        y_pred = y_pred.as_subclass(torch.Tensor).long()
        y = y.as_subclass(torch.Tensor).long()
        if self.match_iou_threshold < 0.5:  # one-to-one matching by assignment: MONAI's own code
            return super()._compute_tensor(
                torch.cat([y_pred, (y_pred > 0).long()], 1), torch.cat([y, (y > 0).long()], 1)
            )
        counts = [pq_counts(p[0], t[0], self.match_iou_threshold) for p, t in zip(y_pred, y)]
        return torch.tensor(counts, dtype=torch.float32, device=y_pred.device).reshape(-1, 1, 4)
