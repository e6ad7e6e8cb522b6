"""evaluate_case: per-class Dice, IoU, HD95 and ASD of integer label maps, hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from attnseg_monai.metrics import evaluate_case

# 4 x 5 labels, spacing (rows 1 mm, columns 2 mm), classes 0..3
GT = np.zeros((4, 5), dtype=np.int64)
GT[0:2, 0:2] = 1  # class 1: a 2x2 block
PRED = np.zeros((4, 5), dtype=np.int64)
PRED[0, 0] = PRED[0, 1] = PRED[1, 0] = 1  # class 1: the block minus (1, 1)
PRED[3, 4] = 2  # class 2: predicted, not in the label; class 3: in neither
SPACING = (1.0, 2.0)
# class 1: Dice 2*3/(3+4) = 6/7, IoU 3/4. All pixels are edge pixels (2x2 block). pred -> gt: [0, 0, 0];
#          gt -> pred: [0, 0, 0, 1] ((1,1) is 1 mm from (0,1)). HD95 = max(0, 95th pct of [0,0,0,1] = 0.85) = 0.85;
#          symmetric ASD = 1 / 7.
# class 2: Dice = IoU = 0; distances: the image diagonal sqrt((3*1)^2 + (4*2)^2) = sqrt(73)
# class 3: absent from both: NaN everywhere (excluded)


def test_evaluate_case_hand_values():
    out = evaluate_case(PRED, GT, num_classes=4, spacing=SPACING)
    assert out["classes"] == [1, 2, 3]
    assert out["status"] == ["evaluated", "gt_empty", "both_empty"]
    assert out["dice"][:2] == pytest.approx([6 / 7, 0.0]) and math.isnan(out["dice"][2])
    assert out["iou"][:2] == pytest.approx([3 / 4, 0.0]) and math.isnan(out["iou"][2])
    assert out["hd95"][:2] == pytest.approx([0.85, math.sqrt(73)]) and math.isnan(out["hd95"][2])
    assert out["asd"][:2] == pytest.approx([1 / 7, math.sqrt(73)]) and math.isnan(out["asd"][2])
    assert out["mean"]["dice"] == pytest.approx(3 / 7)
    assert out["mean"]["hd95"] == pytest.approx((0.85 + math.sqrt(73)) / 2)


def test_evaluate_case_policies_background_and_metatensor_spacing():
    out = evaluate_case(
        torch.as_tensor(PRED)[None], GT[None], 4, SPACING, metrics=("dice", "hd"), both_empty="perfect", one_empty="nan"
    )
    assert out["dice"][2] == 1.0 and out["hd"][2] == 0.0 and math.isnan(out["hd"][1])
    assert out["hd"][0] == pytest.approx(1.0)
    # background included: class 0 has 16 GT pixels, 16 predicted, 15 shared -> Dice 30/32
    out = evaluate_case(PRED, GT, 4, SPACING, metrics=("dice",), include_background=True)
    assert out["classes"] == [0, 1, 2, 3] and out["dice"][0] == pytest.approx(30 / 32)
    # spacing from the label's affine when none is given
    gt_meta = MetaTensor(torch.as_tensor(GT)[None], affine=torch.diag(torch.tensor([1.0, 2.0, 1.0])))
    out = evaluate_case(PRED, gt_meta, 4, metrics=("hd95",))
    assert out["hd95"][1] == pytest.approx(math.sqrt(73))


def test_evaluate_case_3d():
    gt = np.zeros((2, 2, 3), dtype=np.int64)
    gt[:, :, 0] = 1
    pred = np.zeros_like(gt)
    pred[:, :, 2] = 1  # the same 2x2 slab two slices further: every distance is 2 * 2.5 mm
    out = evaluate_case(pred, gt, 2, spacing=(0.7, 0.7, 2.5))
    assert out["dice"] == [0.0] and out["hd95"] == pytest.approx([5.0]) and out["asd"] == pytest.approx([5.0])


def test_evaluate_case_rejects_bad_input():
    with pytest.raises(ValueError, match="0..3"):
        evaluate_case(PRED + 4, GT, 4)
    with pytest.raises(ValueError, match="metrics"):
        evaluate_case(PRED, GT, 4, metrics=("hd90",))
    with pytest.raises(ValueError, match="same shape"):
        evaluate_case(PRED[:3], GT, 4)
    with pytest.raises(ValueError, match="argmax"):
        evaluate_case(PRED + 0.5, GT, 4)
