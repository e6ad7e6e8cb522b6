"""The BTCV -> 8-organ Synapse label mapping of the TransUNet protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from attnseg_monai.data import BTCV_LABELS, BTCV_TO_SYNAPSE8, SYNAPSE_CLASSES, BTCVToSynapse8d, btcv_to_synapse8


def test_mapping_table_is_the_transunet_protocol():
    assert SYNAPSE_CLASSES == (
        "background",
        "aorta",
        "gallbladder",
        "kidney_left",
        "kidney_right",
        "liver",
        "pancreas",
        "spleen",
        "stomach",
    )
    # each mapped BTCV id carries the organ name of its Synapse class; the mapping hits every class once
    assert all(BTCV_LABELS[btcv] == SYNAPSE_CLASSES[index] for btcv, index in BTCV_TO_SYNAPSE8.items())
    assert sorted(BTCV_TO_SYNAPSE8.values()) == list(range(1, 9))
    ids = np.arange(16, dtype=np.uint8)  # 0..13 and two ids beyond BTCV's
    expected = [0, 7, 4, 3, 2, 0, 5, 8, 1, 0, 0, 6, 0, 0, 0, 0]
    np.testing.assert_array_equal(btcv_to_synapse8(ids), expected)
    assert btcv_to_synapse8(ids).dtype == np.uint8


def test_mapping_keeps_type_dtype_and_metadata():
    volume = np.array([[[8, 4], [3, 2]], [[6, 11], [1, 7]]], dtype=np.float32)
    mapped = btcv_to_synapse8(volume)
    assert mapped.dtype == np.float32 and mapped.shape == volume.shape
    np.testing.assert_array_equal(mapped.ravel(), np.arange(1, 9))
    tensor = MetaTensor(torch.as_tensor(volume)[None], affine=torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0])))
    tensor.meta["filename_or_obj"] = "label0001.nii.gz"
    out = btcv_to_synapse8(tensor)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "label0001.nii.gz"
    assert torch.equal(out.affine, tensor.affine) and out.dtype == torch.float32
    assert torch.equal(out.as_tensor().flatten(), torch.arange(1, 9, dtype=torch.float32))
    assert torch.equal(tensor.as_tensor(), torch.as_tensor(volume)[None])  # the input is not modified
    as_int = btcv_to_synapse8(torch.tensor([13, 12, 10, 9, 5], dtype=torch.int64))
    assert torch.equal(as_int, torch.zeros(5, dtype=torch.int64))
    out = BTCVToSynapse8d(keys="label")({"image": volume, "label": volume})
    np.testing.assert_array_equal(out["label"].ravel(), np.arange(1, 9))
    assert out["image"] is volume


def test_mapping_rejects_labels_that_are_not_ids():
    with pytest.raises(ValueError, match="fractional"):
        btcv_to_synapse8(np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="fractional"):
        btcv_to_synapse8(torch.tensor([1.0, 2.25]))
    with pytest.raises(ValueError, match="non-negative"):
        btcv_to_synapse8(np.array([-1, 2]))
    with pytest.raises(KeyError):
        BTCVToSynapse8d(keys="label")({"image": 0})
