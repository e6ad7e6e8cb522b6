"""Resampling to a target voxel spacing without a whole-volume sampling grid (memory-bounded ``Spacingd``).

MONAI's :class:`~monai.transforms.Spacingd` resamples through an affine sampling grid of the size of the output
(``grid_sample``: three float coordinates per voxel plus intermediate copies); for a 512x512x200 CT that alone peaks
at about 1.6 GiB, and ``Invertd`` of the prediction back to the source grid at about 2.2 GiB (measured for the
attention_unet bundle). When the spacing change is a pure per-axis scaling of the voxel grid, which is what
``Spacingd`` does after ``Orientationd`` (it keeps the direction cosines and changes only the voxel sizes), the same
result is an interpolation of the array: :func:`torch.nn.functional.interpolate` needs no grid and only the input and
the output in memory.

:class:`ResampleToSpacingd` is MONAI's :class:`~monai.transforms.Resized` with the output size computed per image
from its current spacing and the target ``pixdim``: ``size_i = round(shape_i * spacing_i / pixdim_i)``. The
MetaTensor affine is scaled as ``Resized`` does (the voxel grid keeps its corners, so the realised spacing is
``spacing_i * shape_i / size_i``, within half a voxel of ``pixdim_i`` over the field of view), and the transform is
tracked, so ``Invertd`` resizes a prediction back to the exact source shape and affine (``nearest_interp=True`` for
labels).

Example (2D and 3D)::

    # 3D CT to 1 x 1 x 2.5 mm, image trilinear and label nearest
    ResampleToSpacingd(keys=["image", "label"], pixdim=(1.0, 1.0, 2.5), mode=("trilinear", "nearest"))
    # a 2D image to 0.5 mm pixels
    ResampleToSpacingd(keys="image", pixdim=(0.5, 0.5), mode="area")
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import Resized

__all__ = ["ResampleToSpacingd", "size_for_spacing"]


def size_for_spacing(shape: Sequence[int], spacing: Sequence[float], pixdim: Sequence[float]) -> tuple[int, ...]:
    """The array size that covers the same field of view as ``shape`` voxels of ``spacing`` at ``pixdim``.

    Args:
        shape: spatial shape of the image.
        spacing: its voxel size per axis (mm).
        pixdim: the target voxel size per axis; a value <= 0 keeps that axis as it is.

    Raises:
        ValueError: when the three sequences differ in length or a spacing is not positive.

    Example::

        >>> size_for_spacing((512, 512, 200), (0.8, 0.8, 2.5), (1.0, 1.0, 2.5))
        (410, 410, 200)
        >>> size_for_spacing((300, 200), (0.25, 0.25), (0.5, 0.5))
        (150, 100)
    """
    if not len(shape) == len(spacing) == len(pixdim):
        raise ValueError(
            f"shape {tuple(shape)}, spacing {tuple(spacing)} and pixdim {tuple(pixdim)} must have one entry per axis"
        )
    if any(float(s) <= 0 for s in spacing):
        raise ValueError(f"the image spacing {tuple(spacing)} must be positive on every axis")
    return tuple(
        int(n) if float(p) <= 0 else max(1, int(round(int(n) * float(s) / float(p))))
        for n, s, p in zip(shape, spacing, pixdim)
    )


class ResampleToSpacingd(Resized):
    """Resample ``keys`` to the voxel size ``pixdim`` by interpolation (no sampling grid); invertible by ``Invertd``.

    Args:
        keys: the items to resample; they must share the spatial shape of the first one (image and label).
        pixdim: target voxel size, one value per spatial axis (a value <= 0 keeps that axis).
        mode: interpolation per key as in :class:`~monai.transforms.Resized` (``"trilinear"``/``"bilinear"``,
            ``"area"``, ``"nearest"``, ...); use ``"nearest"`` for labels.
        align_corners: as in :class:`~monai.transforms.Resized`.
        anti_aliasing: Gaussian pre-blur when shrinking (memory: one float copy of the input).
        dtype: output float type of the interpolation.
        allow_missing_keys: skip keys that are absent.

    Raises:
        ValueError: for an empty ``pixdim``, an item that is not channel-first with ``len(pixdim)`` spatial axes,
            or items of different spatial shapes.

    Example::

        # 3D: image and label of a CT to 1 x 1 x 2.5 mm
        t = ResampleToSpacingd(["image", "label"], pixdim=(1.0, 1.0, 2.5), mode=("trilinear", "nearest"))
        # 2D
        t = ResampleToSpacingd("image", pixdim=(0.5, 0.5), mode="bilinear")
    """

    def __init__(
        self,
        keys: KeysCollection,
        pixdim: Sequence[float],
        mode: str | Sequence[str] = "trilinear",
        align_corners: bool | None | Sequence[bool | None] = None,
        anti_aliasing: bool | Sequence[bool] = False,
        dtype: torch.dtype | Sequence[torch.dtype] = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        pixdim = tuple(float(p) for p in pixdim)
        if not pixdim:
            raise ValueError("pixdim must give one voxel size per spatial axis, e.g. (1.0, 1.0, 2.5)")
        self.pixdim = pixdim
        super().__init__(
            keys,
            spatial_size=[-1] * len(pixdim),
            mode=mode,
            align_corners=align_corners,
            anti_aliasing=anti_aliasing,
            dtype=dtype,
            allow_missing_keys=allow_missing_keys,
        )

    def _target_size(self, key: Hashable, img: torch.Tensor) -> tuple[int, ...]:
        dims = len(self.pixdim)
        if img.ndim != dims + 1:
            raise ValueError(
                f"{key!r}: expected a channel-first array with {dims} spatial axes for pixdim {self.pixdim}, "
                f"got shape {tuple(img.shape)}"
            )
        if isinstance(img, MetaTensor):
            spacing = affine_to_spacing(img.affine, r=dims).tolist()
        else:
            spacing = [1.0] * dims
        return size_for_spacing(img.shape[1:], spacing, self.pixdim)

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        size: tuple[int, ...] | None = None
        first: Hashable | None = None
        for key in self.key_iterator(d):
            shape = tuple(d[key].shape[1:])
            if size is None:
                size, first, first_shape = self._target_size(key, d[key]), key, shape
            elif shape != first_shape:
                raise ValueError(
                    f"{key!r} has spatial shape {shape} but {first!r} has {first_shape}: resample items of one grid"
                )
        if size is None:
            return d
        self.resizer.spatial_size = size
        return super().__call__(d, lazy=lazy)
