"""Class-averaged confusion-count metrics: MPA, MIoU and Mean_Dice of MCSA-UNet, and pixel accuracy.

The MCSA-UNet seed (001) evaluates mitosis segmentation with (C = 2 classes, background included):

- eq. 7-8: ``P = TP / (TP + FP)`` per class, ``MPA = (1/C) sum_i P_i`` (the seed calls P "precision");
- eq. 9: ``MIOU = (1/C) sum_i TP_i / (FN_i + TP_i + FP_i)``;
- eq. 10: ``Mean_Dice = (1/C) sum_i 2 |GT_i & S_i| / (|GT_i| + |S_i|)`` (the printed ``GT ∪ S`` denominator is a typo:
  with it the score would not reach 1 for a perfect match, contradicting the stated range [0, 1]).

The focal/attention U-Net seed (002) reports ``acc`` and ``mIoU``: :class:`PixelAccuracyMetric` and
:class:`MIoUMetric`. Per-image confusion counts come from MONAI's :func:`monai.metrics.get_confusion_matrix`.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric, get_confusion_matrix

from .utils import check_choice

__all__ = [
    "ClassMeanConfusionMetric",
    "MIoUMetric",
    "MPAMetric",
    "MeanDiceMetric",
    "PixelAccuracyMetric",
    "class_scores",
]

_SCORES = ("precision", "recall", "iou", "dice", "accuracy")
_REDUCTIONS = ("dataset", "image")
_BOTH_EMPTY = ("exclude", "perfect")


def class_scores(counts: torch.Tensor, score: str, both_empty: str = "exclude") -> torch.Tensor:
    """Per-class scores from confusion counts ``(..., 4)`` ordered ``(tp, fp, tn, fn)`` (MONAI's order).

    A class absent from both the prediction and the label (``tp + fp + fn == 0``) scores NaN (``"exclude"``: left out
    of later means) or 1 (``"perfect"``). A class present in only one of them and whose ratio is ``0 / 0`` (precision
    of a class never predicted, recall of a class not in the label) scores 0: a one-sided miss counts as a failure.

    Args:
        counts: confusion counts, last dimension ``(tp, fp, tn, fn)``.
        score: ``"precision"`` (TP/(TP+FP)), ``"recall"`` (TP/(TP+FN)), ``"iou"`` (TP/(TP+FP+FN)), ``"dice"``
            (2TP/(2TP+FP+FN)) or ``"accuracy"`` (same as recall per class; :class:`PixelAccuracyMetric` pools it).
        both_empty: ``"exclude"`` or ``"perfect"``.

    Raises:
        ValueError: for an unknown ``score`` or ``both_empty``, or when the last dimension is not 4.
    """
    score = check_choice("score", score, _SCORES)
    both_empty = check_choice("both_empty", both_empty, _BOTH_EMPTY)
    if counts.shape[-1] != 4:
        raise ValueError(f"counts must end in a dimension of 4 (tp, fp, tn, fn), got shape {tuple(counts.shape)}.")
    counts = counts.to(torch.float64)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 3]
    if score == "precision":
        num, den = tp, tp + fp
    elif score in ("recall", "accuracy"):
        num, den = tp, tp + fn
    elif score == "iou":
        num, den = tp, tp + fp + fn
    else:
        num, den = 2 * tp, 2 * tp + fp + fn
    out = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
    absent = (tp + fp + fn) == 0
    fill = float("nan") if both_empty == "exclude" else 1.0
    return torch.where(absent, torch.full_like(out, fill), out)


def _nanmean(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    valid = ~torch.isnan(x)
    total = torch.where(valid, x, torch.zeros_like(x)).sum(dim)
    n = valid.sum(dim)
    return torch.where(n > 0, total / n.clamp_min(1), torch.full_like(total, float("nan"))), n


class ClassMeanConfusionMetric(CumulativeIterationMetric):
    """Mean over classes of a per-class confusion-count score, accumulated per image or over the data set.

    Inputs are binarised one-hot ``(B, C, H, W[, D])`` predictions and labels (e.g. after
    ``AsDiscrete(argmax=True, to_onehot=C)`` and ``AsDiscrete(to_onehot=C)``). Each call buffers MONAI's confusion
    counts ``(B, C, 4)``; :meth:`aggregate` then computes:

    - ``reduction="dataset"`` (default): counts summed over all images, one score per class, mean over classes;
    - ``reduction="image"``: one score per class and image, mean over classes per image, mean over images.

    Class means skip NaN classes (absent from both prediction and label under ``both_empty="exclude"``); the image
    mean skips images where every class is NaN. ``get_not_nans=True`` also returns how many classes (dataset) or images
    (image) entered the final mean.

    Args:
        score: the per-class score, see :func:`class_scores`.
        include_background: keep channel 0 (the seed's C = 2 counts background). Default True.
        reduction: ``"dataset"`` or ``"image"``.
        both_empty: ``"exclude"`` (NaN) or ``"perfect"`` (1) for a class absent from prediction and label.
        get_not_nans: if True, :meth:`aggregate` returns ``(value, not_nans)``.

    Raises:
        ValueError: for an unknown option; in a call, for inputs of different shapes or fewer than 3 dimensions.

    Example::

        # 2D, C = 2 one-hot (B, 2, H, W)
        metric = ClassMeanConfusionMetric("iou")
        metric(y_pred=torch.nn.functional.one_hot(torch.randint(0, 2, (2, 8, 8)), 2).permute(0, 3, 1, 2),
               y=torch.nn.functional.one_hot(torch.randint(0, 2, (2, 8, 8)), 2).permute(0, 3, 1, 2))
        miou = metric.aggregate()
        # 3D, per-image mean
        metric = ClassMeanConfusionMetric("dice", reduction="image")
        metric(y_pred=torch.nn.functional.one_hot(torch.randint(0, 3, (1, 4, 4, 4)), 3).permute(0, 4, 1, 2, 3),
               y=torch.nn.functional.one_hot(torch.randint(0, 3, (1, 4, 4, 4)), 3).permute(0, 4, 1, 2, 3))
        dice = metric.aggregate()
    """

    def __init__(
        self,
        score: str,
        *,
        include_background: bool = True,
        reduction: str = "dataset",
        both_empty: str = "exclude",
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.score = check_choice("score", score, _SCORES)
        self.include_background = include_background
        self.reduction = check_choice("reduction", reduction, _REDUCTIONS)
        self.both_empty = check_choice("both_empty", both_empty, _BOTH_EMPTY)
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs the label y.")
        if y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
        if y_pred.ndim < 3:
            raise ValueError(f"expected one-hot (B, C, H, W[, D]) inputs, got shape {tuple(y_pred.shape)}.")
        y_pred = y_pred.as_subclass(torch.Tensor).float()
        y = y.as_subclass(torch.Tensor).float()
        counts = get_confusion_matrix(y_pred, y, include_background=self.include_background)
        return counts.to(torch.float64)

    def _counts(self) -> torch.Tensor:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("nothing to aggregate: call the metric on some data first.")
        return data

    def _pooled(self, counts: torch.Tensor) -> torch.Tensor:
        """Score of counts ``(..., C, 4)`` with the class dimension reduced; NaN where no class counts."""
        return _nanmean(class_scores(counts, self.score, self.both_empty), -1)[0]

    def aggregate_per_class(self, reduction: str | None = None) -> torch.Tensor:
        """One score per class, shape ``(C,)``: from the summed counts (dataset) or the NaN-skipping image mean.

        Args:
            reduction: overrides the constructor's ``reduction``.
        """
        mode = self.reduction if reduction is None else check_choice("reduction", reduction, _REDUCTIONS)
        counts = self._counts()
        if mode == "dataset":
            return class_scores(counts.sum(0), self.score, self.both_empty)
        return _nanmean(class_scores(counts, self.score, self.both_empty), 0)[0]

    def per_image(self) -> torch.Tensor:
        """The class-mean score of every buffered image, shape ``(N,)`` (NaN where every class was excluded)."""
        return self._pooled(self._counts())

    def aggregate(self, reduction: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The final value (a 0-dim tensor); see the class docstring.

        Args:
            reduction: overrides the constructor's ``reduction`` (``"dataset"`` or ``"image"``).
        """
        mode = self.reduction if reduction is None else check_choice("reduction", reduction, _REDUCTIONS)
        counts = self._counts()
        if mode == "dataset":
            per_class = class_scores(counts.sum(0), self.score, self.both_empty)
            value, n = _nanmean(per_class, 0)
        else:
            value, n = _nanmean(self._pooled(counts), 0)
        return (value, n.to(torch.float64)) if self.get_not_nans else value


class MPAMetric(ClassMeanConfusionMetric):
    """Mean pixel accuracy of MCSA-UNet (seed 001, eq. 7-8): the mean over classes of a per-class accuracy.

    The seed defines the per-class term as precision, ``P_i = TP_i / (TP_i + FP_i)``, and that is the default. The
    usual "pixel accuracy of class i" (FCN, Long et al. 2015) is recall, ``TP_i / (TP_i + FN_i)``: choose it with
    ``per_class="recall"``. Background counts as a class (C = 2 in the paper).

    Args:
        per_class: ``"precision"`` (the seed's eq. 7) or ``"recall"``.
        include_background: see :class:`ClassMeanConfusionMetric`.
        reduction: ``"dataset"`` or ``"image"``.
        both_empty: ``"exclude"`` or ``"perfect"``.
        get_not_nans: see :class:`ClassMeanConfusionMetric`.

    Raises:
        ValueError: for an unknown ``per_class`` or any option :class:`ClassMeanConfusionMetric` rejects.

    Example::

        # 2D, C = 2: y_pred and y one-hot (B, 2, H, W)
        mpa = MPAMetric()
        # 3D, per-class recall, per-image mean: one-hot (B, C, H, W, D)
        mpa = MPAMetric(per_class="recall", reduction="image")
    """

    def __init__(
        self,
        per_class: str = "precision",
        *,
        include_background: bool = True,
        reduction: str = "dataset",
        both_empty: str = "exclude",
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            check_choice("per_class", per_class, ("precision", "recall")),
            include_background=include_background,
            reduction=reduction,
            both_empty=both_empty,
            get_not_nans=get_not_nans,
        )


class MIoUMetric(ClassMeanConfusionMetric):
    """Mean intersection over union (seed 001 eq. 9, seed 002 "mIoU"): mean over classes of TP/(TP+FP+FN).

    Args:
        include_background: see :class:`ClassMeanConfusionMetric` (default True: background is a class).
        reduction: ``"dataset"`` or ``"image"``.
        both_empty: ``"exclude"`` or ``"perfect"``.
        get_not_nans: see :class:`ClassMeanConfusionMetric`.

    Raises:
        ValueError: for an option :class:`ClassMeanConfusionMetric` rejects.

    Example::

        # 2D: one-hot (B, 2, H, W)
        miou = MIoUMetric()
        # 3D, foreground classes only: one-hot (B, C, H, W, D)
        miou = MIoUMetric(include_background=False)
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        reduction: str = "dataset",
        both_empty: str = "exclude",
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            "iou",
            include_background=include_background,
            reduction=reduction,
            both_empty=both_empty,
            get_not_nans=get_not_nans,
        )


class MeanDiceMetric(ClassMeanConfusionMetric):
    """Mean_Dice of MCSA-UNet (seed 001 eq. 10, read as Dice): mean over classes of 2TP/(2TP+FP+FN).

    Unlike MONAI's :class:`~monai.metrics.DiceMetric` (per image, background left out by default) this includes
    background and, by default, pools the counts over the data set, as the seed's C = 2 formula does.

    Args:
        include_background: see :class:`ClassMeanConfusionMetric`.
        reduction: ``"dataset"`` or ``"image"``.
        both_empty: ``"exclude"`` or ``"perfect"``.
        get_not_nans: see :class:`ClassMeanConfusionMetric`.

    Raises:
        ValueError: for an option :class:`ClassMeanConfusionMetric` rejects.

    Example::

        # 2D: one-hot (B, 2, H, W)
        dice = MeanDiceMetric()
        # 3D, per-image mean: one-hot (B, C, H, W, D)
        dice = MeanDiceMetric(reduction="image")
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        reduction: str = "dataset",
        both_empty: str = "exclude",
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            "dice",
            include_background=include_background,
            reduction=reduction,
            both_empty=both_empty,
            get_not_nans=get_not_nans,
        )


class PixelAccuracyMetric(ClassMeanConfusionMetric):
    """Overall pixel accuracy (seed 002 "acc"): the fraction of pixels whose class is right.

    ``acc = sum_i TP_i / sum_i (TP_i + FN_i)`` over all classes, background included, which for mutually exclusive
    one-hot labels is (correct pixels) / (all pixels). Pooled over the data set or averaged over images.

    Args:
        reduction: ``"dataset"`` or ``"image"``.
        get_not_nans: see :class:`ClassMeanConfusionMetric`.

    Raises:
        ValueError: for an unknown ``reduction``.

    Example::

        # 2D: one-hot (B, 2, H, W)
        acc = PixelAccuracyMetric()
        # 3D: one-hot (B, C, H, W, D), mean of per-image accuracies
        acc = PixelAccuracyMetric(reduction="image")
    """

    def __init__(self, *, reduction: str = "dataset", get_not_nans: bool = False) -> None:
        super().__init__("accuracy", include_background=True, reduction=reduction, get_not_nans=get_not_nans)

    def _pooled(self, counts: torch.Tensor) -> torch.Tensor:
        counts = counts.to(torch.float64)
        tp, total = counts[..., 0].sum(-1), (counts[..., 0] + counts[..., 3]).sum(-1)
        return torch.where(total > 0, tp / total.clamp_min(1), torch.full_like(tp, float("nan")))

    def aggregate(self, reduction: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The pixel accuracy (a 0-dim tensor).

        Args:
            reduction: overrides the constructor's ``reduction`` (``"dataset"`` or ``"image"``).
        """
        mode = self.reduction if reduction is None else check_choice("reduction", reduction, _REDUCTIONS)
        counts = self._counts()
        per = self._pooled(counts.sum(0, keepdim=True)) if mode == "dataset" else self._pooled(counts)
        value, n = _nanmean(per, 0)
        return (value, n.to(torch.float64)) if self.get_not_nans else value
