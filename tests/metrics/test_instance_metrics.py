"""AJI (Kumar 2017), AJI+ and MONAI's PQ on hand-computed toy instance maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_panoptic_quality

from attnseg_monai.metrics import AggregatedJaccardIndex, InstancePanopticQualityMetric, aji_counts, pq_counts

# Split nucleus. GT1 (area 8) is predicted as P1 + P2 (area 4 each); GT2 (area 4) as P3 (area 5, one extra pixel).
SPLIT_GT = np.array(
    [
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 2, 2],
        [0, 0, 0, 0, 2, 2],
    ]
)
SPLIT_PRED = np.array(
    [
        [1, 1, 2, 2, 0, 0],
        [1, 1, 2, 2, 0, 0],
        [0, 0, 0, 0, 3, 3],
        [0, 0, 0, 3, 3, 3],
    ]
)
# Merged nuclei. GT1 (area 4) and GT2 (area 6) are both covered by one predicted P1 (area 12).
MERGE_GT = np.array([[1, 1, 0, 2, 2, 2], [1, 1, 0, 2, 2, 2]])
MERGE_PRED = np.ones((2, 6), dtype=np.int64)
# Non-consecutive ids: GT1 (area 4) found as P5 (area 3, inside GT1), GT3 (area 2) missed, P7 (area 2) false positive.
MISS_GT = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 3, 3, 0]])
MISS_PRED = np.array([[5, 5, 0, 0, 0, 7], [5, 0, 0, 0, 0, 7], [0, 0, 0, 0, 0, 0]])


def _b(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x)[None, None]


def test_aji_split_nucleus():
    # GT1: IoU(P1) = 4/8 = IoU(P2) -> tie, lowest id P1: C += 4, U += 8
    # GT2: P3, inter 4, union 5: C += 4, U += 5
    # P2 never picked: U += 4  ->  C = 8, U = 17
    assert aji_counts(SPLIT_PRED, SPLIT_GT) == (8, 17)
    # AJI+: pairs GT1-P1 (IoU .5), GT2-P3 (.8); P2 unpaired: C = 4 + 4, U = 8 + 5 + 4
    assert aji_counts(SPLIT_PRED, SPLIT_GT, "aji_plus") == (8, 17)
    metric = AggregatedJaccardIndex()
    metric(_b(SPLIT_PRED), _b(SPLIT_GT))
    assert metric.aggregate().item() == pytest.approx(8 / 17)


def test_aji_merged_nuclei_and_aji_plus():
    # AJI: GT1 -> P1: C += 4, U += 12; GT2 -> P1 again: C += 6, U += 12  ->  10 / 24
    assert aji_counts(MERGE_PRED, MERGE_GT) == (10, 24)
    # AJI+: P1 pairs only with GT2 (IoU 6/12 > 4/12): C = 6, U = 12 + |GT1| 4 = 16
    assert aji_counts(MERGE_PRED, MERGE_GT, "aji_plus") == (6, 16)
    metric = AggregatedJaccardIndex(variant="aji_plus")
    metric(_b(MERGE_PRED), _b(MERGE_GT))
    assert metric.aggregate().item() == pytest.approx(6 / 16)


def test_aji_missed_and_false_positive_with_sparse_ids():
    # GT1 -> P5: C += 3, U += 4; GT3 overlaps nothing: U += 2; P7 never picked: U += 2  ->  3 / 8
    assert aji_counts(MISS_PRED, MISS_GT) == (3, 8)
    assert aji_counts(torch.as_tensor(MISS_PRED), torch.as_tensor(MISS_GT)) == (3, 8)


def test_aji_empty_cases_and_reductions():
    empty = np.zeros((2, 6), dtype=np.int64)
    one = np.zeros((2, 6), dtype=np.int64)
    one[0, :3] = 4
    assert aji_counts(empty, empty) == (0, 0)  # undefined: NaN below
    assert aji_counts(one, empty) == (0, 3)  # prediction only: 0 / 3
    assert aji_counts(empty, one) == (0, 3)  # ground truth only: 0 / 3

    metric = AggregatedJaccardIndex(get_not_nans=True)
    metric(_b(MERGE_PRED), _b(MERGE_GT))  # 10/24
    metric([torch.as_tensor(empty)[None]], [torch.as_tensor(empty)[None]])  # NaN, left out
    metric(_b(one), _b(empty))  # 0/3
    per_image = metric.per_image()
    assert per_image[0].item() == pytest.approx(10 / 24) and math.isnan(per_image[1].item()) and per_image[2] == 0
    value, not_nans = metric.aggregate()
    assert value.item() == pytest.approx((10 / 24 + 0) / 2) and not_nans.item() == 2
    # dataset: (10 + 0 + 0) / (24 + 0 + 3)
    value, not_nans = metric.aggregate(reduction="dataset")
    assert value.item() == pytest.approx(10 / 27) and not_nans.item() == 2

    only_empty = AggregatedJaccardIndex()
    only_empty(_b(empty), _b(empty))
    assert math.isnan(only_empty.aggregate().item())


def test_aji_batch_2d_and_3d():
    pred = torch.stack([_b(SPLIT_PRED)[0], _b(SPLIT_GT)[0]])  # image 2 is perfect: AJI 1
    gt = torch.stack([_b(SPLIT_GT)[0], _b(SPLIT_GT)[0]])
    metric = AggregatedJaccardIndex(reduction="dataset")
    metric(pred, gt)
    # (8 + 12) / (17 + 12)
    assert metric.aggregate().item() == pytest.approx(20 / 29)
    # 3D: GT one 2x2x2 cube (8 voxels), prediction the same cube minus one voxel: 7 / 8
    gt3 = torch.zeros(1, 1, 3, 3, 3, dtype=torch.int64)
    gt3[..., :2, :2, :2] = 1
    pred3 = gt3.clone() * 9
    pred3[..., 0, 0, 0] = 0
    metric3 = AggregatedJaccardIndex()
    metric3(pred3, gt3)
    assert metric3.aggregate().item() == pytest.approx(7 / 8)


def _reference_aji(pred: np.ndarray, gt: np.ndarray) -> float:
    """Kumar's loop, written plainly, for cross-checking the vectorised version."""
    c = u = 0
    used: set[int] = set()
    for g in [i for i in np.unique(gt) if i]:
        gm = gt == g
        best, best_iou = None, 0.0
        for p in [i for i in np.unique(pred[gm]) if i]:
            pm = pred == p
            iou = (gm & pm).sum() / (gm | pm).sum()
            if iou > best_iou:
                best, best_iou = p, iou
        if best is None:
            u += gm.sum()
        else:
            pm = pred == best
            c += (gm & pm).sum()
            u += (gm | pm).sum()
            used.add(int(best))
    for p in [i for i in np.unique(pred) if i and int(i) not in used]:
        u += (pred == p).sum()
    return c / u


def test_aji_matches_plain_loop_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(5):
        gt = rng.integers(0, 6, (12, 12)) * (rng.random((12, 12)) > 0.3)
        pred = rng.integers(0, 7, (12, 12)) * (rng.random((12, 12)) > 0.3)
        c, u = aji_counts(pred, gt)
        assert c / u == pytest.approx(_reference_aji(pred, gt))


def test_aji_rejects_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        AggregatedJaccardIndex(reduction="mean")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W"):
        AggregatedJaccardIndex()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=">= 0"):
        aji_counts(-np.ones((2, 2)), np.ones((2, 2)))


def test_pq_through_monai_matches_hand_values():
    # SPLIT: GT1-P1 IoU 0.5 is not > 0.5 -> unpaired; GT2-P3 IoU 0.8 pairs. TP 1, FP 2 (P1, P2), FN 1 (GT1)
    # PQ = 0.8 / (1 + 2/2 + 1/2) = 0.32, SQ = 0.8, RQ = 1 / 2.5 = 0.4
    pq = InstancePanopticQualityMetric(metric_name=("pq", "sq", "rq"), reduction="none")
    pq(_b(SPLIT_PRED), _b(SPLIT_GT))
    pq_v, sq_v, rq_v = pq.aggregate()
    assert pq_v.item() == pytest.approx(0.32, abs=1e-5)
    assert sq_v.item() == pytest.approx(0.8, abs=1e-5)
    assert rq_v.item() == pytest.approx(0.4, abs=1e-5)
    # MISS: GT1-P5 IoU 0.75 pairs; FP 1 (P7), FN 1 (GT3): PQ = 0.75 / (1 + 0.5 + 0.5) = 0.375
    # MERGE: best IoU 0.5 is not > 0.5: TP 0, FP 1, FN 2 -> PQ 0
    pq2 = InstancePanopticQualityMetric(reduction="none")
    pq2(_b(MISS_PRED), _b(MISS_GT))
    pq2(_b(MERGE_PRED), _b(MERGE_GT))
    per_image = pq2.aggregate()
    assert per_image.flatten().tolist() == pytest.approx([0.375, 0.0], abs=1e-5)
    # default mean_batch averages (TP, FP, FN, IoU sum) over images, the same ratio as one PQ over the data set.
    # image 1 MISS: TP 1, FP 1, FN 1, IoU .75; image 2 empty prediction vs MISS_GT: FN 2.
    # sums TP 1, FP 1, FN 3, IoU .75 -> .75 / (1 + .5 + 1.5) = 0.25
    pq3 = InstancePanopticQualityMetric()
    pq3(torch.cat([_b(MISS_PRED), torch.zeros_like(_b(MISS_PRED))]), torch.cat([_b(MISS_GT)] * 2))
    assert pq3.aggregate().item() == pytest.approx(0.25, abs=1e-5)


def test_pq_counts_equal_monai_on_random_maps():
    rng = np.random.default_rng(1)
    for threshold in (0.5, 0.6):
        for _ in range(4):
            gt = rng.integers(0, 4, (10, 10)) * (rng.random((10, 10)) > 0.2)
            pred = gt.copy()
            pred[rng.random((10, 10)) > 0.8] = rng.integers(0, 5)
            ours = pq_counts(pred, gt, threshold)
            ref = compute_panoptic_quality(
                torch.as_tensor(pred), torch.as_tensor(gt), match_iou_threshold=threshold, output_confusion_matrix=True
            )
            assert ours[:3] == tuple(int(v) for v in ref[:3]) and ours[3] == pytest.approx(float(ref[3]), abs=1e-5)
    # below 0.5 the wrapper hands over to MONAI's assignment: SPLIT pairs GT1 with P1 (IoU .5) as well now
    # TP 2 (IoU .5 + .8), FP 1, FN 0 -> PQ = 1.3 / 2.5 = 0.52
    pq = InstancePanopticQualityMetric(match_iou_threshold=0.4)
    pq(_b(SPLIT_PRED), _b(SPLIT_GT))
    assert pq.aggregate().item() == pytest.approx(0.52, abs=1e-5)
    with pytest.raises(ValueError, match="match_iou_threshold"):
        pq_counts(SPLIT_PRED, SPLIT_GT, 0.3)
