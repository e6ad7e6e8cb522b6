"""Transforms for nuclei instance segmentation: instance maps to 3-class targets and back by watershed.

Han-Net (seed 000) segments touching nuclei; a semantic network separates them when trained on three classes,
background / nucleus interior / nucleus boundary (the scheme of Caicedo et al., "Evaluation of Deep Learning
Strategies for Nucleus Segmentation in Fluorescence Images", Cytometry A 2019, and of the MoNuSeg baselines of
Kumar et al., IEEE TMI 2017). :class:`InstanceToBoundaryClasses` builds such targets; :class:`WatershedInstances`
turns the network's three probabilities back into instances with marker-controlled watershed
(:func:`skimage.segmentation.watershed`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type, optional_import

ndimage, _ = optional_import("scipy.ndimage")
watershed, _ = optional_import("skimage.segmentation", name="watershed")

__all__ = [
    "BinaryFromInstances",
    "BinaryFromInstancesd",
    "InstanceToBoundaryClasses",
    "InstanceToBoundaryClassesd",
    "WatershedInstances",
    "WatershedInstancesd",
]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def _instance_map(img: NdarrayOrTensor, name: str) -> np.ndarray:
    """Channel-first single-channel instance map -> integer numpy array without the channel."""
    arr = convert_data_type(img, np.ndarray)[0]
    if arr.ndim not in (3, 4) or arr.shape[0] != 1:
        raise ValueError(f"{name} expects a channel-first instance map (1, H, W[, D]), got shape {arr.shape}.")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} expects integer instance ids, got non-integer values.")
    lab = arr[0].astype(np.int64)
    if lab.size and lab.min() < 0:
        raise ValueError(f"{name} expects instance ids >= 0 (0 is background).")
    return lab


def _connectivity(connectivity: int, ndim: int) -> int:
    if not isinstance(connectivity, (int, np.integer)) or not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be an int in 1..{ndim} for {ndim}D images, got {connectivity!r}.")
    return int(connectivity)


class InstanceToBoundaryClasses(Transform):
    """Instance map to three classes: 0 background, 1 nucleus interior, 2 nucleus boundary.

    A foreground voxel is boundary when any voxel within ``boundary_width`` steps of it (``connectivity`` neighbours
    per step) has another label, background or another instance; the rest of the instance is interior. Both sides of
    a contact between two touching instances become boundary, so their interiors never touch and connected
    components of the interior give one seed per instance. Instances touching the image border are not outlined
    along it. An instance thinner than ``2 * boundary_width + 1`` has no interior and will not survive
    :class:`WatershedInstances`.

    Args:
        boundary_width: boundary thickness in voxels (>= 1).
        connectivity: neighbourhood of one step: 1 (faces, the default) up to the number of spatial dims (all).

    Raises:
        ValueError: for a width < 1, a bad connectivity, or an input that is not ``(1, H, W[, D])`` of ids >= 0.

    Example::

        # 2D: (1, H, W) instance ids -> (1, H, W) classes
        classes = InstanceToBoundaryClasses(boundary_width=2)(instances_2d)
        # 3D: (1, H, W, D)
        classes = InstanceToBoundaryClasses()(instances_3d)
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, boundary_width: int = 1, connectivity: int = 1) -> None:
        if not isinstance(boundary_width, (int, np.integer)) or boundary_width < 1:
            raise ValueError(f"boundary_width must be an int >= 1, got {boundary_width!r}.")
        self.boundary_width = int(boundary_width)
        self.connectivity = connectivity

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map ``(1, H, W[, D])`` instance ids to ``(1, H, W[, D])`` class ids, keeping the input's type and dtype."""
        lab = _instance_map(img, type(self).__name__)
        conn = _connectivity(self.connectivity, lab.ndim)
        footprint = ndimage.iterate_structure(ndimage.generate_binary_structure(lab.ndim, conn), self.boundary_width)
        high = ndimage.maximum_filter(lab, footprint=footprint, mode="nearest")
        low = ndimage.minimum_filter(lab, footprint=footprint, mode="nearest")
        fg = lab > 0
        interior = fg & (high == lab) & (low == lab)
        out = np.where(interior, INTERIOR, np.where(fg, BOUNDARY, BACKGROUND))[None]
        return convert_to_dst_type(out, img)[0]


class WatershedInstances(Transform):
    """Instances from background / interior / boundary probabilities by marker-controlled watershed.

    With ``p`` the ``(3, H, W[, D])`` probabilities (channel 0 background, 1 interior, 2 boundary):

    1. foreground mask ``1 - p[0] > mask_threshold``;
    2. markers: connected components (``connectivity``) of ``p[1] > marker_threshold`` inside the mask, dropping
       components smaller than ``min_size`` voxels;
    3. :func:`skimage.segmentation.watershed` of ``1 - p[1]`` from the markers, restricted to the mask. Foreground
       regions that hold no marker stay background.

    The output ``(1, H, W[, D])`` holds instance ids ``1..N`` (0 background) as int32, in the input's array type.

    Args:
        mask_threshold: threshold on ``1 - p_background``.
        marker_threshold: threshold on ``p_interior``.
        min_size: smallest marker kept, in voxels (>= 1).
        connectivity: neighbourhood for markers and flooding, 1 .. number of spatial dims.
        softmax: apply a softmax over the channels first (for logits).

    Raises:
        ValueError: for thresholds outside [0, 1), ``min_size < 1``, a bad connectivity, or an input that is not
            ``(3, H, W[, D])``.

    Example::

        # 2D: (3, H, W) softmax output -> (1, H, W) instance ids
        instances = WatershedInstances(min_size=10)(probs_2d)
        # 3D: (3, H, W, D) logits
        instances = WatershedInstances(softmax=True)(logits_3d)
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        mask_threshold: float = 0.5,
        marker_threshold: float = 0.5,
        min_size: int = 10,
        connectivity: int = 1,
        softmax: bool = False,
    ) -> None:
        for name, value in (("mask_threshold", mask_threshold), ("marker_threshold", marker_threshold)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {value!r}.")
        if not isinstance(min_size, (int, np.integer)) or min_size < 1:
            raise ValueError(f"min_size must be an int >= 1 (voxels), got {min_size!r}.")
        self.mask_threshold = float(mask_threshold)
        self.marker_threshold = float(marker_threshold)
        self.min_size = int(min_size)
        self.connectivity = connectivity
        self.softmax = softmax

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map ``(3, H, W[, D])`` probabilities (or logits with ``softmax=True``) to ``(1, H, W[, D])`` instance ids."""
        prob = convert_data_type(img, torch.Tensor, dtype=torch.float32)[0].detach().cpu()
        if prob.ndim not in (3, 4) or prob.shape[0] != 3:
            raise ValueError(
                f"WatershedInstances expects (3, H, W[, D]) scores for background, interior and boundary, "
                f"got shape {tuple(prob.shape)}."
            )
        if self.softmax:
            prob = torch.softmax(prob, dim=0)
        p = prob.as_subclass(torch.Tensor).numpy()
        conn = _connectivity(self.connectivity, p.ndim - 1)
        mask = (1.0 - p[0]) > self.mask_threshold
        seeds = (p[1] > self.marker_threshold) & mask
        structure = ndimage.generate_binary_structure(seeds.ndim, conn)
        markers, n = ndimage.label(seeds, structure=structure)
        if n:
            sizes = np.bincount(markers.ravel(), minlength=n + 1)
            keep = sizes >= self.min_size
            keep[0] = False
            new_ids = np.zeros(n + 1, dtype=np.int32)
            new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
            markers = new_ids[markers]
        if markers.max() > 0:
            labels = watershed(1.0 - p[1], markers=markers, mask=mask, connectivity=conn)
        else:
            labels = np.zeros(p.shape[1:], dtype=np.int32)
        return convert_to_dst_type(labels.astype(np.int32)[None], img, dtype=np.int32)[0]


class BinaryFromInstances(Transform):
    """Instance ids to a binary foreground map ``(instance > 0)``, in the input's type and dtype.

    Raises:
        ValueError: for an input that is not ``(1, H, W[, D])`` of ids >= 0.

    Example::

        # 2D: (1, H, W) -> (1, H, W) of 0/1
        mask = BinaryFromInstances()(instances_2d)
        # 3D: (1, H, W, D)
        mask = BinaryFromInstances()(instances_3d)
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map ``(1, H, W[, D])`` instance ids to a 0/1 map of the same shape."""
        lab = _instance_map(img, type(self).__name__)
        return convert_to_dst_type((lab > 0)[None].astype(np.uint8), img)[0]


class _KeysTransformd(MapTransform):
    """Apply one array transform to every key, in place."""

    transform: Transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class InstanceToBoundaryClassesd(_KeysTransformd):
    """Dictionary version of :class:`InstanceToBoundaryClasses` (replaces each key's instance map by its classes).

    Args:
        keys: keys of the instance maps.
        boundary_width: see :class:`InstanceToBoundaryClasses`.
        connectivity: see :class:`InstanceToBoundaryClasses`.
        allow_missing_keys: do not raise for a missing key.

    Raises:
        ValueError: as :class:`InstanceToBoundaryClasses`.

    Example::

        # 2D label (1, H, W) -> 3 classes
        d = InstanceToBoundaryClassesd("label", boundary_width=2)({"label": instances_2d})
        # 3D label (1, H, W, D)
        d = InstanceToBoundaryClassesd(["label"])({"label": instances_3d})
    """

    backend = InstanceToBoundaryClasses.backend

    def __init__(
        self, keys: KeysCollection, boundary_width: int = 1, connectivity: int = 1, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = InstanceToBoundaryClasses(boundary_width=boundary_width, connectivity=connectivity)


class WatershedInstancesd(_KeysTransformd):
    """Dictionary version of :class:`WatershedInstances` (replaces each key's probabilities by instance ids).

    Args:
        keys: keys of the ``(3, H, W[, D])`` probabilities.
        mask_threshold: see :class:`WatershedInstances`.
        marker_threshold: see :class:`WatershedInstances`.
        min_size: see :class:`WatershedInstances`.
        connectivity: see :class:`WatershedInstances`.
        softmax: see :class:`WatershedInstances`.
        allow_missing_keys: do not raise for a missing key.

    Raises:
        ValueError: as :class:`WatershedInstances`.

    Example::

        # 2D prediction (3, H, W) -> (1, H, W) instances
        d = WatershedInstancesd("pred", min_size=10)({"pred": probs_2d})
        # 3D logits (3, H, W, D)
        d = WatershedInstancesd("pred", softmax=True)({"pred": logits_3d})
    """

    backend = WatershedInstances.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_threshold: float = 0.5,
        marker_threshold: float = 0.5,
        min_size: int = 10,
        connectivity: int = 1,
        softmax: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = WatershedInstances(
            mask_threshold=mask_threshold,
            marker_threshold=marker_threshold,
            min_size=min_size,
            connectivity=connectivity,
            softmax=softmax,
        )


class BinaryFromInstancesd(_KeysTransformd):
    """Dictionary version of :class:`BinaryFromInstances`.

    Args:
        keys: keys of the instance maps.
        allow_missing_keys: do not raise for a missing key.

    Raises:
        ValueError: as :class:`BinaryFromInstances`.

    Example::

        # 2D (1, H, W)
        d = BinaryFromInstancesd("label")({"label": instances_2d})
        # 3D (1, H, W, D)
        d = BinaryFromInstancesd(["label", "pred"])({"label": instances_3d, "pred": pred_3d})
    """

    backend = BinaryFromInstances.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BinaryFromInstances()
