"""ResampleToSpacingd: sizes from spacing, the affine it writes, exact inversion, agreement with MONAI's Spacingd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, Orientationd, Spacingd

from attnseg_monai.transforms.resample import ResampleToSpacingd, size_for_spacing


def _oblique_affine(spacing: tuple[float, ...]) -> np.ndarray:
    theta = 0.3
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    affine = rot @ np.diag([*spacing, 1.0])
    affine[:3, 3] = [-120.0, 35.0, 410.0]
    return affine


def _smooth_volume(shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return (np.sin(2.0 * grids[0]) + np.cos(3.0 * grids[1]) + grids[2] ** 2).astype(np.float32)[None]


def test_size_for_spacing():
    assert size_for_spacing((512, 512, 200), (0.8, 0.8, 2.5), (1.0, 1.0, 2.5)) == (410, 410, 200)
    assert size_for_spacing((300, 200), (0.25, 0.25), (0.5, 0.5)) == (150, 100)
    assert size_for_spacing((10, 7), (1.0, 1.0), (0.0, 100.0)) == (10, 1)  # <= 0 keeps an axis; never below 1
    with pytest.raises(ValueError, match="one entry per axis"):
        size_for_spacing((10, 10), (1.0, 1.0), (1.0,))
    with pytest.raises(ValueError, match="positive"):
        size_for_spacing((10, 10), (0.0, 1.0), (1.0, 1.0))


def test_oblique_volume_round_trip_is_exact_and_matches_spacingd():
    spacing = (0.8, 0.8, 2.5)
    affine = _oblique_affine(spacing)
    image = MetaTensor(torch.from_numpy(_smooth_volume((60, 50, 12))), affine=torch.from_numpy(affine))
    ours = Compose([Orientationd("image", axcodes="RAS"), ResampleToSpacingd("image", pixdim=(1.6, 1.6, 2.5))])
    theirs = Compose(
        [Orientationd("image", axcodes="RAS"), Spacingd("image", pixdim=(1.6, 1.6, 2.5), dtype=np.float32)]
    )
    a, b = ours({"image": image.clone()})["image"], theirs({"image": image.clone()})["image"]
    assert tuple(a.shape) == (1, 30, 25, 12)
    # direction cosines kept, voxel size is the target (the grid keeps its corners: shape * spacing is kept)
    np.testing.assert_allclose(np.linalg.norm(a.affine[:3, :3].numpy(), axis=0), [1.6, 1.6, 2.5], atol=1e-6)
    np.testing.assert_allclose(a.affine[:3, :3].numpy() / [1.6, 1.6, 2.5], b.affine[:3, :3].numpy() / [1.6, 1.6, 2.5])
    # same field of view as MONAI's Spacingd: the origins differ by half the change of voxel size
    common = tuple(min(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))
    crop = (slice(None),) + tuple(slice(2, n - 2) for n in common)
    assert np.corrcoef(a[crop].numpy().ravel(), b[crop].numpy().ravel())[0, 1] > 0.995

    # a label map made on the resampled grid goes back to the source grid exactly (shape, affine) with Invertd
    data = ours({"image": image.clone()})
    pred = MetaTensor((data["image"] > 0.5).to(torch.float32), affine=data["image"].affine, meta=data["image"].meta)
    pred.applied_operations = data["image"].applied_operations
    data["pred"] = pred
    back = Invertd("pred", transform=ours, orig_keys="image", nearest_interp=True)(data)["pred"]
    assert tuple(back.shape) == tuple(image.shape)
    np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-6)
    assert set(np.unique(back.numpy()).tolist()) <= {0.0, 1.0}
    agreement = ((back[0].numpy() > 0.5) == (image[0].numpy() > 0.5)).mean()
    assert agreement > 0.97


def test_image_and_label_together_and_2d():
    image = MetaTensor(torch.rand(1, 40, 30), affine=torch.diag(torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64)))
    label = MetaTensor((torch.rand(1, 40, 30) > 0.5).float(), affine=image.affine.clone())
    t = ResampleToSpacingd(["image", "label"], pixdim=(1.0, 1.0), mode=("bilinear", "nearest"))
    out = t({"image": image, "label": label})
    assert tuple(out["image"].shape) == tuple(out["label"].shape) == (1, 20, 15)
    assert set(np.unique(out["label"].numpy()).tolist()) <= {0.0, 1.0}  # nearest keeps label values
    with pytest.raises(ValueError, match="spatial shape"):
        t({"image": image, "label": label[:, :20]})
    with pytest.raises(ValueError, match="2 spatial axes"):
        t({"image": torch.rand(1, 4, 4, 4), "label": torch.rand(1, 4, 4, 4)})
    with pytest.raises(ValueError, match="pixdim"):
        ResampleToSpacingd("image", pixdim=())
