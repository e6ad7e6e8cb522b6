"""Minimal ``make_grid`` / ``save_image`` with torchvision's call signatures, for the MONAI Label server test only."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

__all__ = ["make_grid", "save_image"]


def make_grid(
    tensor: torch.Tensor | list[torch.Tensor],
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Tile a batch of images (B, C, H, W), one image (C, H, W) or (H, W) into one (C, H', W') image.

    Raises:
        ValueError: if the input is not 2D, 3D or 4D.
    """
    x = torch.stack(list(tensor)) if isinstance(tensor, (list, tuple)) else tensor
    x = x.detach().float().clone()
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"make_grid takes a 2D, 3D or 4D tensor, got shape {tuple(x.shape)}.")
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if normalize:
        parts = x if scale_each else x[None]
        for part in parts:
            lo, hi = value_range if value_range is not None else (float(part.min()), float(part.max()))
            part.clamp_(lo, hi).sub_(lo).div_(max(hi - lo, 1e-5))
        if not scale_each:
            x = parts[0]
    if x.shape[0] == 1:
        return x[0]
    b, c, h, w = x.shape
    cols = min(nrow, b)
    rows = math.ceil(b / cols)
    grid = torch.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for i in range(b):
        r, q = divmod(i, cols)
        top, left = r * (h + padding) + padding, q * (w + padding) + padding
        grid[:, top : top + h, left : left + w] = x[i]
    return grid


def save_image(tensor: torch.Tensor, fp: str | os.PathLike, **kwargs) -> None:
    """Write a tensor with values in [0, 1] as an 8-bit image (``kwargs`` go to :func:`make_grid`)."""
    grid = make_grid(tensor, **kwargs)
    array = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    Image.fromarray(np.ascontiguousarray(array)).save(fp)
