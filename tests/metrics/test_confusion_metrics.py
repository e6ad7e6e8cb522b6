"""MCSA-UNet's MPA / MIoU / Mean_Dice (seed 001 eq. 7-10) and pixel accuracy on a hand-counted 4x4 example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnseg_monai.metrics import (
    ClassMeanConfusionMetric,
    MeanDiceMetric,
    MIoUMetric,
    MPAMetric,
    PixelAccuracyMetric,
    class_scores,
)

LABEL = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
PRED = np.array([[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
# class 1: TP 3 (1,1)(1,2)(2,1); FP 2 (1,3)(2,3); FN 1 (2,2)           ; TN 10
# class 0: TP 10               ; FP 1 (2,2)     ; FN 2 (1,3)(2,3)     ; TN 3
# precision: c0 10/11, c1 3/5      -> MPA  = (10/11 + 3/5) / 2 = 83/110
# recall:    c0 10/12, c1 3/4      -> MPAr = (5/6 + 3/4) / 2   = 19/24
# IoU:       c0 10/13, c1 3/6      -> MIoU = (10/13 + 1/2) / 2 = 33/52
# Dice:      c0 20/23, c1 6/9      -> Dice = (20/23 + 2/3) / 2 = 53/69
# accuracy: 13 of 16 pixels right
EMPTY = np.zeros((4, 4), dtype=np.int64)  # image 2: no class 1 anywhere (class 1 absent from both)
DOT = np.zeros((4, 4), dtype=np.int64)
DOT[0, 0] = 1  # image 3 label: one class-1 pixel; its prediction is EMPTY (class 1 absent from the prediction only)


def _onehot(*maps: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.stack(maps))
    return torch.nn.functional.one_hot(x, 2).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (MPAMetric(), 83 / 110),
        (MPAMetric(per_class="recall"), 19 / 24),
        (MIoUMetric(), 33 / 52),
        (MeanDiceMetric(), 53 / 69),
        (PixelAccuracyMetric(), 13 / 16),
    ],
)
def test_single_image_hand_values(metric, expected):
    metric(_onehot(PRED), _onehot(LABEL))
    assert metric.aggregate().item() == pytest.approx(expected)
    assert metric.aggregate(reduction="image").item() == pytest.approx(expected)


def test_empty_masks_dataset_vs_image():
    mpa = MPAMetric(get_not_nans=True)
    mpa(_onehot(PRED, EMPTY, EMPTY), _onehot(LABEL, EMPTY, DOT))
    # image 2 (EMPTY vs EMPTY): c0 TP 16; c1 absent from both -> NaN (excluded)
    # image 3 (EMPTY vs DOT):   c0 TP 15, FP 1 -> 15/16; c1 TP 0, FP 0, FN 1 -> 0/0 one-sided -> 0
    per_image = mpa.per_image()
    assert per_image.tolist() == pytest.approx([83 / 110, 1.0, (15 / 16 + 0) / 2])
    # image mean over the three class means
    value, n = mpa.aggregate(reduction="image")
    assert value.item() == pytest.approx((83 / 110 + 1.0 + 15 / 32) / 3) and n.item() == 3
    # dataset: summed c0 TP 10+16+15 = 41, FP 1+0+1 = 2; c1 TP 3, FP 2  -> (41/43 + 3/5) / 2
    value, n = mpa.aggregate()
    assert value.item() == pytest.approx((41 / 43 + 3 / 5) / 2) and n.item() == 2
    # per class, image mode: c1 = mean(3/5, NaN, 0) = 0.3 (NaN skipped)
    assert mpa.aggregate_per_class(reduction="image").tolist() == pytest.approx([(10 / 11 + 1 + 15 / 16) / 3, 0.3])


def test_both_empty_perfect_policy_and_all_excluded():
    dice = MeanDiceMetric(reduction="image", both_empty="perfect", include_background=False)
    dice(_onehot(EMPTY, PRED), _onehot(EMPTY, LABEL))
    # image 1 class 1 absent from both -> 1 ("perfect"); image 2 class 1 Dice 6/9 -> mean (1 + 2/3) / 2
    assert dice.aggregate().item() == pytest.approx(5 / 6)
    only_bg_excluded = MIoUMetric(include_background=False)
    only_bg_excluded(_onehot(EMPTY), _onehot(EMPTY))
    assert math.isnan(only_bg_excluded.aggregate().item())  # nothing left to average


def test_class_scores_rules():
    # rows: (tp, fp, tn, fn); a class absent from both; one never predicted; one predicted but not in the label
    counts = torch.tensor([[0.0, 0, 9, 0], [0, 0, 8, 1], [0, 2, 7, 0], [3, 1, 4, 1]])
    prec = class_scores(counts, "precision")
    assert math.isnan(prec[0]) and prec[1:].tolist() == pytest.approx([0, 0, 0.75])
    assert class_scores(counts, "recall", "perfect").tolist() == pytest.approx([1, 0, 0, 0.75])
    assert class_scores(counts, "dice")[1:].tolist() == pytest.approx([0, 0, 6 / 8])
    with pytest.raises(ValueError, match="score"):
        class_scores(counts, "f2")


def test_3d_and_list_inputs():
    # a 2x2x2 volume, 3 classes; labels 0,0,1,1,2,2,2,2 and prediction 0,1,1,1,2,2,2,0
    label = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2]).reshape(2, 2, 2)
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 2, 0]).reshape(2, 2, 2)
    oh = lambda x: torch.nn.functional.one_hot(x, 3).permute(3, 0, 1, 2).float()  # noqa: E731
    # IoU: c0 TP1 FP1 FN1 -> 1/3; c1 TP2 FP1 -> 2/3; c2 TP3 FN1 -> 3/4
    miou = MIoUMetric()
    miou([oh(pred)], [oh(label)])
    assert miou.aggregate().item() == pytest.approx((1 / 3 + 2 / 3 + 3 / 4) / 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="per_class"):
        MPAMetric(per_class="f1")
    with pytest.raises(ValueError, match="reduction"):
        MIoUMetric(reduction="mean")
    with pytest.raises(ValueError, match="both_empty"):
        ClassMeanConfusionMetric("dice", both_empty="one")
    with pytest.raises(ValueError, match="same shape"):
        MeanDiceMetric()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
