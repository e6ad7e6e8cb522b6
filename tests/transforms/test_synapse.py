"""Synapse transforms (attnseg_monai.transforms.synapse): random axial slices, the loader's arguments."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from attnseg_monai.transforms import HU_WINDOW, LoadSynapsed, RandAxialSlicesd, load_synapse


def test_slice_sampler_rejects_bad_arguments_and_balances_organs():
    vol = {"image": torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5), "label": torch.zeros(1, 2, 3, 5)}
    sampler = RandAxialSlicesd(keys=["image", "label"], num_samples=10)
    sampler.set_random_state(0)
    out = sampler(vol)
    assert len(out) == 5, "at most one sample per slice"
    firsts = sorted(int(o["image"][0, 0, 0]) for o in out)
    assert firsts == [0, 1, 2, 3, 4]
    # class-balanced draws: organ 2 lies on slice 3 only, organ 1 on every slice -> slice 3 has 1/2 + 1/10
    lab = torch.zeros(1, 2, 3, 5)
    lab[0, 0, 0] = 1
    lab[0, 1, 1, 3] = 2
    balanced = RandAxialSlicesd(keys=["image", "label"], num_samples=1, label_key="label", class_balance=1.0)
    np.testing.assert_allclose(balanced.slice_weights(lab), [0.1, 0.1, 0.1, 0.6, 0.1])
    balanced.set_random_state(0)
    drawn = [int(balanced({**vol, "label": lab})[0]["image"][0, 0, 0]) for _ in range(200)]
    assert 100 < drawn.count(3) < 140 and set(drawn) == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="label_key"):
        RandAxialSlicesd(keys="image", class_balance=0.5)
    with pytest.raises(ValueError, match="num_samples"):
        RandAxialSlicesd(keys="image", num_samples=0)
    with pytest.raises(ValueError, match="different slice counts"):
        sampler({"image": torch.zeros(1, 2, 3, 5), "label": torch.zeros(1, 2, 3, 4)})


def test_one_slice_volume_gives_one_sample_of_the_slice():
    samples = RandAxialSlicesd(keys="image", num_samples=4)({"image": torch.rand(1, 8, 6, 1)})
    assert len(samples) == 1 and tuple(samples[0]["image"].shape) == (1, 8, 6)


def test_loader_windows_raw_images_and_rejects_bad_arguments(tmp_path):
    hu = np.array([[[-1000, -125], [75, 275]], [[400, 0], [-125, 1000]]], np.int16)
    nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / "img.nii.gz")
    image = LoadSynapsed(keys="image")({"image": str(tmp_path / "img.nii.gz")})["image"]
    assert tuple(image.shape) == (1, 2, 2, 2) and HU_WINDOW == (-125.0, 275.0)
    np.testing.assert_allclose(image[0].numpy(), (np.clip(hu, -125, 275) + 125) / 400, atol=1e-6)
    assert load_synapse(tmp_path / "img.nii.gz", hu_window=None).max() == 1000
    with pytest.raises(ValueError, match="hu_window"):
        LoadSynapsed(keys="image", hu_window=(275, -125))
    with pytest.raises(ValueError, match="role"):
        load_synapse(tmp_path / "img.nii.gz", role="mask")
    with pytest.raises(ValueError, match="label_mapping"):
        LoadSynapsed(keys="label", label_mapping="totalsegmentator")
