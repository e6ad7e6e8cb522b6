"""Whole-slide image sources: read any region of a slide level without loading the slide.

- ``openslide`` / ``cucim``: MONAI's :class:`~monai.data.WSIReader` with that backend (``read_region`` per tile);
- ``tifffile``: a reader on top of tifffile that decodes only the TIFF tiles a region touches (MONAI's ``tifffile``
  backend decodes the whole level for every patch, which does not scale to slides). JPEG-compressed slides (most
  ``.svs``) need the ``imagecodecs`` package for it; openslide reads them directly.

``backend="auto"`` (:func:`open_slide`) takes openslide when it is installed, tifffile otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..io.suffixes import WSI_MIN_PIXELS, WSI_SUFFIXES, image_suffix
from .errors import InputError

__all__ = ["WSI_BACKENDS", "MonaiSlideSource", "SlideSource", "TiffTileSource", "is_whole_slide", "open_slide"]

logger = logging.getLogger(__name__)

WSI_BACKENDS = ("auto", "openslide", "cucim", "tifffile")


class SlideSource(ABC):
    """A slide opened for reading regions. ``levels`` lists ``(height, width)`` per pyramid level (0 = full size)."""

    levels: list[tuple[int, int]]
    mpp: tuple[float, float] | None = None

    @abstractmethod
    def read_region(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        """RGB pixels ``(height, width, 3)`` uint8 of a region given in ``level`` coordinates (white outside)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the file."""

    def __enter__(self) -> SlideSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def downsample(self, level: int) -> tuple[float, float]:
        """``(y, x)`` size ratio of level 0 to ``level``."""
        h0, w0 = self.levels[0]
        h, w = self.levels[level]
        return h0 / h, w0 / w

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """An RGB thumbnail whose longest side is at most ``max_size`` (read from the coarsest useful level, in bands
        of rows so memory stays bounded)."""
        from PIL import Image

        level = 0  # the coarsest level still at least max_size large (level 0 if none is)
        for i, (h, w) in enumerate(self.levels):
            if max(h, w) >= max_size:
                level = i
        h, w = self.levels[level]
        factor = max(1, math.ceil(max(h, w) / max_size))
        out_h, out_w = max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor))
        rows = []
        band = max(factor, (2048 // factor) * factor)
        for y in range(0, h, band):
            bh = min(band, h - y)
            region = self.read_region(level, y, 0, bh, w)
            image = Image.fromarray(region).resize((out_w, max(1, round(bh / factor))), resample=Image.Resampling.BOX)
            rows.append(np.asarray(image))
        thumb = np.concatenate(rows, axis=0)
        if thumb.shape[0] != out_h:
            thumb = np.asarray(Image.fromarray(thumb).resize((out_w, out_h), resample=Image.Resampling.BOX))
        return thumb


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize == 2:
            arr = (arr >> 8).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


class TiffTileSource(SlideSource):
    """A pyramidal (or plain tiled) TIFF read with tifffile, decoding only the tiles a region touches.

    Levels are the pyramid levels of the first series (for ``.svs`` the baseline pyramid, without label and macro
    images). Decoded tiles are kept in a small LRU cache, since neighbouring regions share their margins.

    Args:
        path: the slide.
        cache_tiles: number of decoded TIFF tiles kept.

    Raises:
        InputError: if the file is not a readable TIFF or its layout is not supported (multi-plane tiles).
    """

    def __init__(self, path: str | os.PathLike, cache_tiles: int = 256) -> None:
        import tifffile

        self.path = Path(path)
        try:
            self._tif = tifffile.TiffFile(self.path)
            series = self._tif.series[0]
            levels = list(getattr(series, "levels", None) or [series])
            self._pages = [lvl.keyframe for lvl in levels]
        except Exception as exc:  # noqa: BLE001 - any tifffile failure is this file's problem
            raise InputError(path, f"not a readable TIFF slide ({type(exc).__name__}: {exc})") from exc
        self.levels = [(int(p.imagelength), int(p.imagewidth)) for p in self._pages]
        for p in self._pages:
            if p.is_tiled and (p.planarconfig != 1 and p.samplesperpixel > 1 or getattr(p, "tiledepth", 1) > 1):
                raise InputError(path, "TIFF tiles with separate colour planes or depth are not supported")
        self.mpp = self._read_mpp(self._pages[0])
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_size = int(cache_tiles)
        self._arrays: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _read_mpp(page: Any) -> tuple[float, float] | None:
        try:
            tags = page.tags
            xres, yres = tags["XResolution"].value, tags["YResolution"].value
            unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
            per_um = {2: 25400.0, 3: 10000.0}.get(unit)
            if per_um is None or not xres[0] or not yres[0]:
                return None
            return (per_um * yres[1] / yres[0], per_um * xres[1] / xres[0])
        except Exception:  # noqa: BLE001 - no resolution tags
            return None

    def close(self) -> None:
        self._tif.close()

    def _tile(self, level: int, index: int) -> np.ndarray:
        key = (level, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        page = self._pages[level]
        th, tw, spp = int(page.tilelength), int(page.tilewidth), int(page.samplesperpixel)
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if count == 0:
            tile = np.full((th, tw, 3), 255, np.uint8)
        else:
            fh = self._tif.filehandle
            with self._lock:
                fh.seek(offset)
                data = fh.read(count)
            try:
                segment, _, _ = page.decode(data, index, jpegtables=getattr(page, "jpegtables", None))
            except Exception as exc:  # noqa: BLE001 - decoder errors name the codec
                raise InputError(
                    self.path,
                    f"cannot decode its tiles ({type(exc).__name__}: {exc}); JPEG/JPEG2000 slides need the "
                    "'imagecodecs' package for the tifffile backend, or use the openslide backend",
                ) from exc
            if segment is None:
                raise InputError(self.path, "a tile could not be decoded (unsupported compression)")
            tile = _to_rgb(np.asarray(segment).reshape(th, tw, spp))
        self._cache[key] = tile
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tile

    def read_region(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        page = self._pages[level]
        lh, lw = self.levels[level]
        out = np.full((height, width, 3), 255, np.uint8)
        y0, x0, y1, x1 = max(0, y), max(0, x), min(lh, y + height), min(lw, x + width)
        if y1 <= y0 or x1 <= x0:
            return out
        if not page.is_tiled:
            if level not in self._arrays:
                if lh * lw > 16384 * 16384:
                    raise InputError(
                        self.path, "a huge level is stored in strips, not tiles: use the openslide backend"
                    )
                self._arrays[level] = _to_rgb(page.asarray())
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._arrays[level][y0:y1, x0:x1]
            return out
        th, tw = int(page.tilelength), int(page.tilewidth)
        ntx = math.ceil(lw / tw)
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                tile = self._tile(level, ty * ntx + tx)
                ty0, tx0 = ty * th, tx * tw
                sy0, sx0 = max(y0, ty0), max(x0, tx0)
                sy1, sx1 = min(y1, ty0 + th), min(x1, tx0 + tw)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0]
        return out


class MonaiSlideSource(SlideSource):
    """A slide read through MONAI's :class:`~monai.data.WSIReader` (``openslide``, ``cucim`` or ``tifffile`` backend).

    Raises:
        InputError: if the backend cannot open the file.
    """

    def __init__(self, path: str | os.PathLike, backend: str = "openslide") -> None:
        from monai.data import WSIReader

        self.path = Path(path)
        self.backend = backend
        try:
            self._reader = WSIReader(backend=backend, channel_dim=0)
            self._wsi = self._reader.read(str(self.path))
            count = self._reader.get_level_count(self._wsi)
            self.levels = [tuple(int(v) for v in self._reader.get_size(self._wsi, i)) for i in range(count)]
        except Exception as exc:  # noqa: BLE001 - backend errors name the problem
            raise InputError(path, f"the {backend} backend cannot open it ({type(exc).__name__}: {exc})") from exc
        try:
            self.mpp = tuple(float(v) for v in self._reader.get_mpp(self._wsi, 0))
        except Exception:  # noqa: BLE001 - no resolution in the file
            self.mpp = None

    def close(self) -> None:
        close = getattr(self._wsi, "close", None)
        if callable(close):
            close()

    def read_region(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        lh, lw = self.levels[level]
        out = np.full((height, width, 3), 255, np.uint8)
        y0, x0, y1, x1 = max(0, y), max(0, x), min(lh, y + height), min(lw, x + width)
        if y1 <= y0 or x1 <= x0:
            return out
        dy, dx = self.downsample(level)
        patch, _ = self._reader.get_data(
            self._wsi, location=(round(y0 * dy), round(x0 * dx)), size=(y1 - y0, x1 - x0), level=level, mode="RGB"
        )
        arr = np.asarray(patch)
        out[y0 - y : y1 - y, x0 - x : x1 - x] = _to_rgb(np.moveaxis(arr, 0, -1))
        return out


def open_slide(path: str | os.PathLike, backend: str = "auto") -> SlideSource:
    """Open a slide with ``backend`` (:data:`WSI_BACKENDS`); ``"auto"``: openslide if installed, else tifffile.

    Raises:
        ValueError: for an unknown backend.
        InputError: if the slide cannot be opened.
    """
    if backend not in WSI_BACKENDS:
        raise ValueError(f"wsi backend must be one of {WSI_BACKENDS}, got {backend!r}.")
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file not found")
    if p.stat().st_size == 0:
        raise InputError(p, "empty file (0 bytes)")
    if backend == "auto":
        try:
            import openslide  # noqa: F401

            backend = "openslide"
        except ImportError:
            backend = "tifffile"
    if backend == "tifffile":
        return TiffTileSource(p)
    return MonaiSlideSource(p, backend=backend)


def is_whole_slide(path: str | os.PathLike, min_pixels: int = WSI_MIN_PIXELS) -> bool:
    """Whether ``path`` is a whole-slide image: a slide format, or a TIFF that is pyramidal or tiled and huge.

    Never raises: an unreadable TIFF is not a slide (its reader reports the problem).
    """
    p = Path(path)
    suffix = image_suffix(p)
    if suffix in WSI_SUFFIXES:
        return True
    if suffix not in (".tif", ".tiff") or not p.is_file() or p.stat().st_size == 0:
        return False
    try:
        import tifffile

        with tifffile.TiffFile(p) as tif:
            if tif.is_svs or tif.is_ndpi or tif.is_scn:
                return True
            series = tif.series[0]
            levels = getattr(series, "levels", [series])
            if len(levels) > 1:
                return True
            page = tif.pages[0]
            return bool(page.is_tiled) and int(page.imagewidth) * int(page.imagelength) >= min_pixels
    except Exception:  # noqa: BLE001 - not a readable TIFF: not a slide
        return False
