"""HD95 / HD / ASD with anisotropic spacing and the empty-mask policy, on tiny masks with known distances."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from monai.data import MetaTensor
from monai.metrics import HausdorffDistanceMetric, SurfaceDistanceMetric

from attnseg_monai.metrics import SurfaceDistancePolicyMetric


def _two_class(fg: torch.Tensor) -> torch.Tensor:
    """Foreground mask (spatial) -> one-hot (1, 2, *spatial)."""
    fg = fg.float()
    return torch.stack([1 - fg, fg])[None]


# 2D, 3 x 10 pixels, spacing (rows 2 mm, columns 1 mm). Masks one pixel thick, so every pixel is an edge pixel.
# GT: row 0, columns 0..3. Prediction: row 1, columns 0..3, plus an outlier at row 1, column 9.
GT2 = torch.zeros(3, 10)
GT2[0, 0:4] = 1
PRED2 = torch.zeros(3, 10)
PRED2[1, 0:4] = 1
PRED2[1, 9] = 1
SP2 = (2.0, 1.0)
OUT = math.sqrt(2.0**2 + 6.0**2)  # outlier (1, 9) to the nearest GT pixel (0, 3): sqrt(40) = 6.3246
# pred -> gt: [2, 2, 2, 2, OUT]; gt -> pred: [2, 2, 2, 2]
HD95_DIRECTED = 2 + 0.8 * (OUT - 2)  # linear 95th percentile of 5 values: index 3.8 -> max with the other side (2)
HD95_POOLED = 2 + 0.6 * (OUT - 2)  # 9 values pooled: index 7.6
ASD_SYM = (8 * 2 + OUT) / 9
ASD_DIRECTED = (4 * 2 + OUT) / 5
DIAG2 = math.sqrt(((3 - 1) * 2.0) ** 2 + ((10 - 1) * 1.0) ** 2)  # sqrt(97): the one-empty penalty


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"kind": "hd95"}, HD95_DIRECTED),
        ({"kind": "hd95", "hd_mode": "pooled"}, HD95_POOLED),
        ({"kind": "hd"}, OUT),
        ({"kind": "asd"}, ASD_SYM),
        ({"kind": "asd", "symmetric": False}, ASD_DIRECTED),
    ],
)
def test_2d_anisotropic_known_distances(kwargs, expected):
    metric = SurfaceDistancePolicyMetric(**kwargs)
    metric(_two_class(PRED2), _two_class(GT2), spacing=SP2)
    assert metric.aggregate().item() == pytest.approx(expected, rel=1e-5)
    assert metric.case_counts()["evaluated"] == 1


def test_3d_anisotropic_known_distances_and_monai_agreement():
    # volume 3 x 3 x 4, spacing (0.5, 0.5, 3.0) mm. GT voxels (1,1,0), (1,1,1); prediction (1,1,3), (1,2,3).
    gt = torch.zeros(3, 3, 4)
    gt[1, 1, 0:2] = 1
    pred = torch.zeros(3, 3, 4)
    pred[1, 1, 3] = pred[1, 2, 3] = 1
    sp = (0.5, 0.5, 3.0)
    d = math.sqrt(0.5**2 + 6.0**2)  # (1,2,3) -> (1,1,1)
    # pred -> gt: [6, d]; gt -> pred: [9, 6]
    cases = {
        "hd": 9.0,
        "hd95": max(6 + 0.95 * (d - 6), 6 + 0.95 * 3),  # 8.85
        "asd": (6 + d + 9 + 6) / 4,
    }
    for kind, expected in cases.items():
        metric = SurfaceDistancePolicyMetric(kind)
        metric(_two_class(pred), _two_class(gt), spacing=sp)
        assert metric.aggregate().item() == pytest.approx(expected, rel=1e-5), kind
    # pooled HD95: sorted [6, 6, d, 9], index 2.85
    pooled = SurfaceDistancePolicyMetric("hd95", hd_mode="pooled")
    pooled(_two_class(pred), _two_class(gt), spacing=sp)
    assert pooled.aggregate().item() == pytest.approx(d + 0.85 * (9 - d), rel=1e-5)
    # on non-empty masks the default modes give MONAI's own numbers
    monai_hd = HausdorffDistanceMetric(percentile=95)(_two_class(pred), _two_class(gt), spacing=sp)
    monai_asd = SurfaceDistanceMetric(symmetric=True)(_two_class(pred), _two_class(gt), spacing=sp)
    assert monai_hd.item() == pytest.approx(cases["hd95"], rel=1e-5)
    assert monai_asd.item() == pytest.approx(cases["asd"], rel=1e-5)


def _policy_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three images of the 2D case: class absent from the label, from the prediction, from both."""
    zero = torch.zeros_like(GT2)
    y_pred = torch.cat([_two_class(PRED2), _two_class(zero), _two_class(zero)])
    y = torch.cat([_two_class(zero), _two_class(GT2), _two_class(zero)])
    return y_pred, y


@pytest.mark.parametrize("kind", ["hd95", "asd"])
def test_empty_policy_all_three_cases(kind):
    y_pred, y = _policy_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the wrapper never hands MONAI an empty mask, so no empty-mask warning
        default = SurfaceDistancePolicyMetric(kind, reduction="none", get_not_nans=True)
        default(y_pred, y, spacing=SP2)
    values = default.aggregate()[0][:, 0].tolist()
    # absent in label -> diagonal; absent in prediction -> diagonal; absent in both -> NaN (excluded)
    assert values[:2] == pytest.approx([DIAG2, DIAG2]) and math.isnan(values[2])
    assert default.case_counts() == {"evaluated": 0, "both_empty": 1, "pred_empty": 1, "gt_empty": 1, "excluded": 1}
    value, not_nans = default.aggregate(reduction="mean")
    assert value.item() == pytest.approx(DIAG2) and not_nans.item() == 2

    monai_like = SurfaceDistancePolicyMetric(kind, one_empty="nan", reduction="none")
    monai_like(y_pred, y, spacing=SP2)
    assert torch.isnan(monai_like.aggregate()).all()
    assert monai_like.case_counts()["excluded"] == 3

    strict = SurfaceDistancePolicyMetric(kind, one_empty="inf", both_empty="perfect", reduction="none")
    strict(y_pred, y, spacing=SP2)
    assert strict.aggregate()[:, 0].tolist() == [math.inf, math.inf, 0.0]
    strict.reset()
    with pytest.raises(ValueError, match="nothing"):
        strict.case_counts()


def test_penalty_exceeds_any_real_distance_and_spacing_from_metatensor():
    # a far-off prediction (opposite corners) is still scored below the empty-prediction penalty
    gt = torch.zeros(3, 10)
    gt[0, 0] = 1
    far = torch.zeros(3, 10)
    far[2, 9] = 1
    affine = torch.diag(torch.tensor([2.0, 1.0, 1.0]))  # 2D affine: rows 2 mm, columns 1 mm
    y = MetaTensor(torch.cat([_two_class(gt), _two_class(gt)]), affine=affine)
    y_pred = torch.cat([_two_class(far), _two_class(torch.zeros_like(gt))])
    metric = SurfaceDistancePolicyMetric("hd", reduction="none")
    metric(y_pred, y)  # no spacing keyword: read from the label's affine
    found, empty = metric.aggregate()[:, 0].tolist()
    assert found == pytest.approx(DIAG2) and empty == pytest.approx(DIAG2)  # corner to corner is the diagonal
    near = torch.zeros(3, 10)
    near[1, 1] = 1
    metric.reset()
    metric(torch.cat([_two_class(near), y_pred[1:]]), y)
    found, empty = metric.aggregate()[:, 0].tolist()
    assert found == pytest.approx(math.sqrt(2.0**2 + 1.0)) and found < empty


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        SurfaceDistancePolicyMetric("hd99")
    with pytest.raises(ValueError, match="one_empty"):
        SurfaceDistancePolicyMetric(one_empty="zero")
    with pytest.raises(ValueError, match="one-hot"):
        SurfaceDistancePolicyMetric()(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4))
