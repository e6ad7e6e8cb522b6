"""Small helpers shared by the metrics of :mod:`attnseg_monai.metrics`.

They validate the string options the metrics take, read the voxel spacing of a ``MetaTensor`` and compute the
image-diagonal penalty of the surface-distance policy. None of them is specific to one paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing

__all__ = ["check_choice", "image_diagonal", "spacing_from_meta"]


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` lower-cased if it is one of ``choices``.

    Args:
        name: the argument's name, for the error message.
        value: the value given.
        choices: the valid values.

    Raises:
        ValueError: when ``value`` is not one of ``choices``.
    """
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
    return value.lower()


def spacing_from_meta(x: torch.Tensor | None, batch_size: int, spatial_dims: int) -> list[tuple[float, ...]] | None:
    """Voxel spacing of every item of a batch, read from the affine of a ``MetaTensor``.

    Args:
        x: a batch-first tensor; only a :class:`monai.data.MetaTensor` carries an affine.
        batch_size: the number of items in the batch.
        spatial_dims: the number of spatial dimensions (2 or 3).

    Returns:
        One spacing tuple per item (the column norms of the affine's rotation-zoom part), or ``None`` when ``x`` is
        not a ``MetaTensor``.
    """
    if not isinstance(x, MetaTensor):
        return None
    affine = torch.as_tensor(x.affine, dtype=torch.float64).cpu()
    if affine.ndim == 2:
        affine = affine.unsqueeze(0).expand(batch_size, -1, -1)
    if affine.shape[0] != batch_size:
        return None
    return [tuple(float(s) for s in affine_to_spacing(a, r=spatial_dims)) for a in affine]


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | float | None) -> float:
    """The largest distance two voxel centres of an image can have, in the units of ``spacing``.

    ``sqrt(sum_i ((n_i - 1) * s_i) ** 2)`` for an image of ``n_i`` voxels of size ``s_i`` along axis ``i``: no surface
    distance measured inside the image can exceed it.

    Args:
        shape: the spatial shape.
        spacing: one number (isotropic), one number per axis, or ``None`` (unit spacing).

    Raises:
        ValueError: when ``spacing`` has neither one entry nor one per axis.
    """
    if spacing is None:
        sp = np.ones(len(shape))
    else:
        sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
        if sp.size == 1:
            sp = np.full(len(shape), float(sp[0]))
        if sp.size != len(shape):
            raise ValueError(f"spacing must have 1 or {len(shape)} entries, got {sp.size}.")
    extent = (np.asarray(shape, dtype=np.float64) - 1.0) * sp
    return float(math.sqrt(float((extent**2).sum())))
