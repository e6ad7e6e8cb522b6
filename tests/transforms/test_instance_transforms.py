"""Boundary-class targets, watershed post-processing and their round trip on separated and touching nuclei."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from attnseg_monai.metrics import aji_counts
from attnseg_monai.transforms import (
    BinaryFromInstances,
    BinaryFromInstancesd,
    InstanceToBoundaryClasses,
    InstanceToBoundaryClassesd,
    WatershedInstances,
    WatershedInstancesd,
)


def test_boundary_classes_of_touching_rectangles_by_hand():
    # two 5x3 instances side by side (columns 1-3 and 4-6), touching along columns 3 | 4
    lab = np.zeros((7, 8), dtype=np.int64)
    lab[1:6, 1:4] = 1
    lab[1:6, 4:7] = 2
    # width 1, 4-neighbourhood: interior = pixels whose 4 neighbours share their id: rows 2-4 of columns 2 and 5.
    # every other instance pixel is boundary, including both sides of the contact (columns 3 and 4)
    expected = np.zeros((7, 8), dtype=np.int64)
    expected[1:6, 1:7] = 2
    expected[2:5, 2] = 1
    expected[2:5, 5] = 1
    out = InstanceToBoundaryClasses()(lab[None])
    assert isinstance(out, np.ndarray) and out.shape == (1, 7, 8)
    np.testing.assert_array_equal(out[0], expected)


def test_boundary_width_and_image_border():
    # a 7x7 instance inside a 9x9 image: width 2 (diamond of radius 2) leaves the central 3x3 as interior
    lab = np.zeros((1, 9, 9), dtype=np.int64)
    lab[0, 1:8, 1:8] = 5
    out = InstanceToBoundaryClasses(boundary_width=2)(torch.as_tensor(lab))
    assert int((out == 1).sum()) == 9 and bool((out[0, 3:6, 3:6] == 1).all())
    assert int((out == 2).sum()) == 49 - 9
    # an instance filling the whole image has no outline along the image border: all interior
    full = torch.ones(1, 4, 4, dtype=torch.int32)
    assert bool((InstanceToBoundaryClasses()(full) == 1).all())


def _discs(touching: bool) -> np.ndarray:
    yy, xx = np.mgrid[:40, :48]
    lab = np.zeros((40, 48), dtype=np.int64)
    gap = 14 if touching else 20  # centres 14 px apart with radius 8: the discs overlap and touch
    for i, cx in enumerate((12, 12 + gap), start=1):
        disc = (yy - 20) ** 2 + (xx - cx) ** 2 <= 64
        lab[disc & (lab == 0)] = i
    lab[(yy - 5) ** 2 + (xx - 40) ** 2 <= 9] = 3  # a small third nucleus (radius 3)
    return lab


@pytest.mark.parametrize("touching", [False, True])
@pytest.mark.parametrize("width", [1, 2])
def test_round_trip_2d(touching, width):
    lab = _discs(touching)
    # touching discs form one foreground component, so plain connected components could not split them
    assert ndimage.label(lab > 0)[1] == (2 if touching else 3)
    classes = InstanceToBoundaryClasses(boundary_width=width)(torch.as_tensor(lab)[None])
    perfect = torch.nn.functional.one_hot(classes[0].long(), 3).permute(2, 0, 1).float()
    instances = WatershedInstances(min_size=1)(perfect)
    assert instances.shape == (1, 40, 48) and instances.dtype == torch.int32
    assert len(torch.unique(instances)) - 1 == 3
    c, u = aji_counts(instances[0], lab)
    assert c / u > 0.99


def test_round_trip_3d_touching_balls():
    zz, yy, xx = np.mgrid[:16, :16, :24]
    lab = np.zeros((16, 16, 24), dtype=np.int64)
    for i, cx in enumerate((7, 15), start=1):
        ball = (zz - 8) ** 2 + (yy - 8) ** 2 + (xx - cx) ** 2 <= 25
        lab[ball & (lab == 0)] = i
    d = InstanceToBoundaryClassesd("label")({"label": MetaTensor(torch.as_tensor(lab)[None])})
    logits = torch.nn.functional.one_hot(d["label"][0].long(), 3).permute(3, 0, 1, 2).float() * 10
    out = WatershedInstancesd("pred", softmax=True, min_size=5)({"pred": logits})["pred"]
    assert len(torch.unique(out)) - 1 == 2
    c, u = aji_counts(out[0], lab)
    assert c / u > 0.99


def test_watershed_thresholds_and_min_size():
    # interior probability 0.9 in two seeds: one of 4 pixels, one of 1 pixel; foreground around both
    p = np.zeros((3, 6, 9), dtype=np.float32)
    p[0] = 1.0
    p[:, 1:5, 1:5] = np.array([0.0, 0.2, 0.8])[:, None, None]  # foreground, boundary-like
    p[:, 2:4, 2:4] = np.array([0.0, 0.9, 0.1])[:, None, None]  # 4-pixel seed
    p[:, 2, 7] = [0.3, 0.6, 0.1]  # 1-pixel seed, foreground 0.7
    out = WatershedInstances(min_size=2)(p)
    assert isinstance(out, np.ndarray) and out.dtype == np.int32
    # the small seed is dropped; the first instance floods its whole 4x4 foreground block
    assert set(np.unique(out)) == {0, 1} and int((out == 1).sum()) == 16
    out = WatershedInstances(min_size=1)(p)
    assert set(np.unique(out)) == {0, 1, 2} and int((out == 2).sum()) == 1
    # a stricter marker threshold removes the 0.6 seed; a stricter mask threshold removes the 0.7 foreground
    assert set(np.unique(WatershedInstances(min_size=1, marker_threshold=0.7)(p))) == {0, 1}
    assert set(np.unique(WatershedInstances(min_size=1, mask_threshold=0.75)(p))) == {0, 1}
    # no seed at all: an empty map
    empty = np.zeros((3, 4, 4), dtype=np.float32)
    empty[0] = 1
    assert not WatershedInstances()(empty).any()


def test_binary_from_instances_and_metatensor():
    lab = MetaTensor(
        torch.tensor([[[0, 3], [7, 0]]], dtype=torch.float32), affine=torch.diag(torch.tensor([2.0, 2, 1]))
    )
    out = BinaryFromInstances()(lab)
    assert isinstance(out, MetaTensor) and out.tolist() == [[[0, 1], [1, 0]]]
    assert torch.equal(out.affine, lab.affine)
    d = BinaryFromInstancesd(["a", "b"], allow_missing_keys=True)({"a": np.array([[[2, 0]]])})
    assert d["a"].tolist() == [[[1, 0]]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="boundary_width"):
        InstanceToBoundaryClasses(boundary_width=0)
    with pytest.raises(ValueError, match=r"\(1, H, W"):
        InstanceToBoundaryClasses()(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="integer"):
        InstanceToBoundaryClasses()(np.full((1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="connectivity"):
        InstanceToBoundaryClasses(connectivity=3)(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"\(3, H, W"):
        WatershedInstances()(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="min_size"):
        WatershedInstances(min_size=0)
    with pytest.raises(ValueError, match="mask_threshold"):
        WatershedInstances(mask_threshold=1.0)
