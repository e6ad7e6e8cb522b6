"""Whole-slide images: patch-wise inference over the tissue, written as a tiled label TIFF plus a preview PNG.

A slide is never loaded whole. :func:`predict_slide` walks it in tiles of ``tile_size`` pixels (row by row), skips
tiles without tissue (Otsu threshold on the saturation of a low-resolution thumbnail), reads each tissue tile with a
``margin`` of context on every side, runs the bundle on it (its own sliding-window inferer and postprocessing),
keeps the tile's core and streams the result into one tiled, zlib-compressed TIFF per output, so memory stays at
one row of tiles per output whatever the slide size. Instance outputs get slide-unique ids (each tile's ids are
renumbered and offset); an instance cut by a tile border keeps one id on each side (a known limit: use a margin of
at least one nucleus diameter, the default is half the inferer's window).

Slide sources:

- ``openslide`` / ``cucim``: MONAI's :class:`~monai.data.WSIReader` with that backend (``read_region`` per tile);
- ``tifffile``: a reader on top of tifffile that decodes only the TIFF tiles a region touches (MONAI's ``tifffile``
  backend decodes the whole level for every patch, which does not scale to slides). JPEG-compressed slides (most
  ``.svs``) need the ``imagecodecs`` package for it; openslide reads them directly.

``backend="auto"`` takes openslide when it is installed, tifffile otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "WSI_BACKENDS",
    "MonaiSlideSource",
    "SlideSource",
    "TiffTileSource",
    "predict_slide",
    "open_slide",
    "tissue_mask",
]

logger = logging.getLogger(__name__)

WSI_BACKENDS = ("auto", "openslide", "cucim", "tifffile")
_DONE = object()


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


class _TiffStream:
    """Writes one tiled TIFF from tiles handed over in row-major order (a writer thread consumes the queue)."""

    def __init__(
        self, path: Path, shape: tuple[int, int], dtype: Any, tile: int, mpp: tuple[float, float] | None
    ) -> None:
        self.path = path
        self.queue: queue.Queue = queue.Queue(maxsize=256)
        self.error: BaseException | None = None
        self.kwargs: dict[str, Any] = {
            "shape": shape,
            "dtype": np.dtype(dtype),
            "tile": (tile, tile),
            "compression": "zlib",
            "photometric": "minisblack",
            "metadata": None,
        }
        if mpp:
            self.kwargs.update(resolution=(1e4 / mpp[1], 1e4 / mpp[0]), resolutionunit="CENTIMETER")
        self.bigtiff = shape[0] * shape[1] * np.dtype(dtype).itemsize > 2**31
        self.thread = threading.Thread(target=self._run, name=f"tiff-writer-{path.name}", daemon=True)
        self.thread.start()

    def _tiles(self):
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            yield item

    def _run(self) -> None:
        import tifffile

        try:
            with tifffile.TiffWriter(self.path, bigtiff=self.bigtiff) as tw:
                tw.write(self._tiles(), **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
            while True:  # unblock the producer
                try:
                    if self.queue.get_nowait() is _DONE:
                        break
                except queue.Empty:
                    break

    def put(self, tile: np.ndarray) -> None:
        while True:
            if self.error is not None:
                raise RuntimeError(f"writing {self.path.name} failed: {self.error}") from self.error
            try:
                self.queue.put(tile, timeout=0.5)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    raise RuntimeError(f"writer of {self.path.name} stopped") from self.error

    def close(self) -> None:
        self.queue.put(_DONE)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"writing {self.path.name} failed: {self.error}") from self.error

    def abort(self) -> None:
        try:
            self.queue.put(_DONE, timeout=1.0)
        except queue.Full:
            pass
        self.thread.join(timeout=30)


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

    from ..data.fileio import encode_png
    from .writers import make_overlay

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
    streams = {k: _TiffStream(outputs[k][0], (height, width), out_dtypes[k], tiff_tile, source.mpp) for k in keys}
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
        image = np.transpose(base, (2, 1, 0))  # (C, x, y), the layout make_overlay takes
        preview_path.write_bytes(encode_png(make_overlay(image, preview.T)))
    return SlideResult(height, width, n_ty * n_tx, len(todo), time.perf_counter() - start, level)
