"""Whole-slide images: patch-wise inference over the tissue, written as a tiled label TIFF plus a preview PNG.

A slide is never loaded whole. :func:`predict_slide` walks it in tiles of ``tile_size`` pixels (row by row), skips
tiles without tissue (Otsu threshold on the saturation of a low-resolution thumbnail), reads each tissue tile with a
``margin`` of context on every side, runs the bundle on it (its own sliding-window inferer and postprocessing),
keeps the tile's core and streams the result into one tiled, zlib-compressed TIFF per output, so memory stays at
one row of tiles per output whatever the slide size. Instance outputs get slide-unique ids (each tile's ids are
renumbered and offset); an instance cut by a tile border keeps one id on each side (a known limit: use a margin of
at least one nucleus diameter, the default is half the inferer's window).

Slides are read through :mod:`~attnseg_monai.inference.slides` (openslide, cuCIM or tile-wise tifffile).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .slides import SlideSource

__all__ = ["SlideResult", "predict_slide", "tissue_mask"]

logger = logging.getLogger(__name__)


def tissue_mask(rgb: np.ndarray, min_saturation: float = 0.05) -> np.ndarray:
    """Tissue in an RGB thumbnail: saturation above its Otsu threshold (at least ``min_saturation``), not black,
    closed and slightly grown so tissue borders are kept. Returns a boolean ``(H, W)`` mask."""
    from scipy import ndimage
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    hsv = rgb2hsv(rgb[..., :3])
    sat, val = hsv[..., 1], hsv[..., 2]
    threshold = threshold_otsu(sat) if float(sat.max()) > float(sat.min()) else 1.0
    mask = (sat > max(float(threshold), min_saturation)) & (val > 0.1)
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3)), iterations=2)
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 4))
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3)), iterations=2)


@dataclass
class SlideResult:
    """What :func:`predict_slide` did: slide size, tiles in total and with tissue, seconds."""

    height: int
    width: int
    tiles: int
    tissue_tiles: int
    seconds: float
    level: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def predict_slide(
    source: SlideSource,
    predict_tile: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    outputs: Mapping[str, tuple[Path, Any, bool]],
    *,
    preview_path: Path | None = None,
    preview_key: str | None = None,
    level: int = 0,
    tile_size: int = 1024,
    margin: int = 64,
    tiff_tile: int = 256,
    tissue: str = "otsu",
    preview_size: int = 1024,
    progress: bool = True,
    desc: str = "slide",
) -> SlideResult:
    """Segment a slide tile by tile and stream the labels into tiled TIFFs.

    Args:
        source: the opened slide.
        predict_tile: RGB region ``(h, w, 3)`` uint8 -> ``{key: (h, w) integer labels}``.
        outputs: ``{key: (tiff path, dtype, is_instance_map)}``; instance maps are written as uint32 with
            slide-unique ids.
        preview_path: where to write the preview PNG (thumbnail with the labels of ``preview_key`` drawn on it).
        preview_key: the output shown in the preview (default: the first).
        level: pyramid level to segment (its size is the output size).
        tile_size: tile edge in pixels (a multiple of ``tiff_tile``).
        margin: context read around each tile and cut off again.
        tiff_tile: edge of the TIFF tiles written (a multiple of 16).
        tissue: ``"otsu"`` (skip tiles without tissue) or ``"all"``.
        preview_size: longest side of the preview.
        progress: show a progress bar over the tissue tiles.
        desc: progress bar label.

    Raises:
        ValueError: for inconsistent sizes or an unknown ``tissue`` mode.
        InputError: if the slide cannot be read.
    """
    from PIL import Image
    from skimage.segmentation import relabel_sequential
    from tqdm.auto import tqdm

    from ..io.writers import TiledTiffStream, write_overlay

    if tissue not in ("otsu", "all"):
        raise ValueError(f"tissue must be 'otsu' or 'all', got {tissue!r}.")
    if tiff_tile % 16 or tile_size % tiff_tile:
        raise ValueError(f"tile_size ({tile_size}) must be a multiple of tiff_tile ({tiff_tile}), itself of 16.")
    if not 0 <= level < len(source.levels):
        raise ValueError(f"level must lie in 0..{len(source.levels) - 1} for this slide, got {level}.")
    start = time.perf_counter()
    height, width = source.levels[level]
    n_ty, n_tx = math.ceil(height / tile_size), math.ceil(width / tile_size)
    thumb = source.thumbnail(max(preview_size, 512))
    fy, fx = height / thumb.shape[0], width / thumb.shape[1]
    mask = tissue_mask(thumb) if tissue == "otsu" else np.ones(thumb.shape[:2], bool)

    def has_tissue(y0: int, x0: int, h: int, w: int) -> bool:
        ty0, tx0 = int(y0 / fy), int(x0 / fx)
        ty1, tx1 = max(ty0 + 1, math.ceil((y0 + h) / fy)), max(tx0 + 1, math.ceil((x0 + w) / fx))
        return bool(mask[ty0:ty1, tx0:tx1].any())

    todo = [
        (ty, tx)
        for ty in range(n_ty)
        for tx in range(n_tx)
        if has_tissue(ty * tile_size, tx * tile_size, tile_size, tile_size)
    ]
    todo_set = set(todo)
    keys = list(outputs)
    preview_key = preview_key or (keys[0] if keys else None)
    factor = max(1, math.ceil(max(height, width) / preview_size))
    preview = np.zeros((math.ceil(height / factor), math.ceil(width / factor)), np.uint32)
    out_dtypes = {
        k: (np.dtype(np.uint32) if inst else np.dtype(dt or np.uint8)) for k, (_, dt, inst) in outputs.items()
    }
    streams = {k: TiledTiffStream(outputs[k][0], (height, width), out_dtypes[k], tiff_tile, source.mpp) for k in keys}
    offsets = dict.fromkeys(keys, 0)
    n_tiff_x = math.ceil(width / tiff_tile)
    bar = tqdm(total=len(todo), desc=desc, unit="tile", disable=not progress, leave=False)
    try:
        for ty in range(n_ty):
            y0 = ty * tile_size
            h = min(tile_size, height - y0)
            strips = {k: np.zeros((tile_size, n_tx * tile_size), out_dtypes[k]) for k in keys}
            for tx in range(n_tx):
                if (ty, tx) not in todo_set:
                    continue
                x0 = tx * tile_size
                w = min(tile_size, width - x0)
                ry0, rx0 = max(0, y0 - margin), max(0, x0 - margin)
                ry1, rx1 = min(height, y0 + h + margin), min(width, x0 + w + margin)
                region = source.read_region(level, ry0, rx0, ry1 - ry0, rx1 - rx0)
                labels = predict_tile(region)
                for k in keys:
                    core = np.asarray(labels[k])[y0 - ry0 : y0 - ry0 + h, x0 - rx0 : x0 - rx0 + w]
                    if outputs[k][2]:
                        core, _, _ = relabel_sequential(core.astype(np.int64))
                        n = int(core.max()) if core.size else 0
                        core = np.where(core > 0, core + offsets[k], 0)
                        offsets[k] += n
                    strips[k][:h, x0 : x0 + w] = core
                bar.update(1)
            rows = math.ceil(h / tiff_tile)
            for k in keys:
                for r in range(rows):
                    for c in range(n_tiff_x):
                        streams[k].put(
                            strips[k][r * tiff_tile : (r + 1) * tiff_tile, c * tiff_tile : (c + 1) * tiff_tile].copy()
                        )
            if preview_key is not None:
                ys = np.arange(y0, y0 + h)
                ys = ys[ys % factor == 0]
                preview[ys // factor] = strips[preview_key][ys - y0, :width:factor][:, : preview.shape[1]]
        for k in keys:
            streams[k].close()
    except BaseException:
        for s in streams.values():
            s.abort()
        raise
    finally:
        bar.close()
    if preview_path is not None:
        base = np.asarray(Image.fromarray(thumb).resize((preview.shape[1], preview.shape[0]), Image.Resampling.BOX))
        write_overlay(preview_path, np.transpose(base, (2, 1, 0)), preview.T)  # (C, x, y): MONAI's layout
    return SlideResult(height, width, n_ty * n_tx, len(todo), time.perf_counter() - start, level)
