"""Label conventions of the abdominal CT data sets: BTCV's 13 organ ids, the 8-organ Synapse protocol, MSD Task07.

The Synapse multi-organ benchmark used by TransUNet and its successors (DANIE, seed 003) evaluates 8 of the 13
organs annotated in the MICCAI 2015 "Multi-Atlas Abdomen Labeling Challenge" (BTCV) CT scans. The class order
below is the one of TransUNet's preprocessed ``train_npz``/``test_vol_h5`` files, which label their voxels 0..8:

==== ============== ==========
 idx Synapse class   BTCV id
==== ============== ==========
  0  background     0 and 5, 9, 10, 12, 13
  1  aorta          8
  2  gallbladder    4
  3  kidney_left    3
  4  kidney_right   2
  5  liver          6
  6  pancreas       11
  7  spleen         1
  8  stomach        7
==== ============== ==========

:func:`btcv_to_synapse8` applies the mapping to numpy arrays and torch tensors (a MONAI ``MetaTensor`` keeps its
metadata); :class:`BTCVToSynapse8d` is the dictionary transform for MONAI pipelines.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = [
    "BTCV_LABELS",
    "BTCV_TO_SYNAPSE8",
    "MSD_PANCREAS_LABELS",
    "SYNAPSE_CLASSES",
    "BTCVToSynapse8d",
    "btcv_to_synapse8",
]

#: BTCV (Synapse "Abdomen", MICCAI 2015) label ids and organ names.
BTCV_LABELS: dict[int, str] = {
    0: "background",
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior_vena_cava",
    10: "portal_and_splenic_vein",
    11: "pancreas",
    12: "adrenal_gland_right",
    13: "adrenal_gland_left",
}

#: The 8-organ Synapse classes of the TransUNet protocol, index = channel = label value in the preprocessed files.
SYNAPSE_CLASSES: tuple[str, ...] = (
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

#: BTCV id -> Synapse class index for the 8 evaluated organs; every other value maps to 0 (background).
BTCV_TO_SYNAPSE8: dict[int, int] = {8: 1, 4: 2, 3: 3, 2: 4, 6: 5, 11: 6, 1: 7, 7: 8}

#: Label values of the Medical Segmentation Decathlon Task07 (pancreas) ``dataset.json``.
MSD_PANCREAS_LABELS: dict[int, str] = {0: "background", 1: "pancreas", 2: "cancer"}

_LUT_SIZE = 256
_LUT = np.zeros(_LUT_SIZE, dtype=np.int64)
for _btcv, _synapse in BTCV_TO_SYNAPSE8.items():
    _LUT[_btcv] = _synapse

_A = TypeVar("_A", np.ndarray, torch.Tensor)


def btcv_to_synapse8(label: _A) -> _A:
    """Map a BTCV label array (ids 0..13) to the 8-organ Synapse classes 0..8 (see the module table).

    Values outside the 8 evaluated organs (esophagus, veins, adrenal glands, and any id above 13) become 0. The
    result has the input's type, shape and dtype; a MONAI ``MetaTensor`` keeps its metadata.

    Args:
        label: integer-valued numpy array or torch tensor of any shape (float dtypes as loaded by ``LoadImage``
            are accepted when their values are whole numbers).

    Returns:
        the mapped labels.

    Raises:
        ValueError: if the array holds negative or non-integer values (a label resampled with linear
            interpolation, say: resample labels with nearest-neighbour interpolation).

    Example::

        >>> import numpy as np
        >>> btcv_to_synapse8(np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 13]))
        array([0, 7, 4, 3, 2, 0, 5, 8, 1, 6, 0])
    """
    if isinstance(label, torch.Tensor):
        values = label.detach()
        if values.is_floating_point() and bool(torch.any(values != torch.round(values))):
            raise ValueError("btcv_to_synapse8 takes whole-number labels; found fractional values.")
        ids = values.to(torch.int64)
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"btcv_to_synapse8 takes non-negative label ids; found {int(ids.min())}.")
        lut = torch.as_tensor(_LUT, device=ids.device)
        mapped = lut[ids.clamp(max=_LUT_SIZE - 1)].to(label.dtype)
        out = label.clone()
        out.copy_(mapped)  # keeps a MetaTensor's metadata and the input's dtype and device
        return out
    array = np.asarray(label)
    if array.dtype.kind == "f" and np.any(array != np.round(array)):
        raise ValueError("btcv_to_synapse8 takes whole-number labels; found fractional values.")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"btcv_to_synapse8 takes a numeric array, got dtype {array.dtype}.")
    ids = array.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(f"btcv_to_synapse8 takes non-negative label ids; found {int(ids.min())}.")
    return _LUT[np.minimum(ids, _LUT_SIZE - 1)].astype(array.dtype)


class BTCVToSynapse8d(MapTransform):
    """Dictionary transform: map BTCV label ids to the 8 Synapse classes with :func:`btcv_to_synapse8`.

    Use it after ``LoadImaged`` on raw BTCV labels (``label/label0001.nii.gz``) so they match the TransUNet
    protocol's classes (:data:`SYNAPSE_CLASSES`). Labels of the TransUNet preprocessed files are already mapped.

    Args:
        keys: keys of the label entries to map.
        allow_missing_keys: do not raise when a key is absent.

    Example::

        >>> from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
        >>> pipeline = Compose([LoadImaged(keys=["image", "label"]), EnsureChannelFirstd(keys=["image", "label"]),
        ...                     BTCVToSynapse8d(keys="label")])        # 3D volume, (1, X, Y, Z)
        >>> out = BTCVToSynapse8d(keys="label")({"label": np.array([[8, 11], [0, 5]])})   # 2D slice
        >>> out["label"].tolist()
        [[1, 6], [0, 0]]
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = btcv_to_synapse8(d[key])
        return d
