"""2D image files without MONAI: deterministic PNG encoding, headers read without decoding, pixels, listing.

Used by the data layer (validating image/mask pairs, writing generated samples) and by the writers of PNG outputs.
Atomic writing and checksums are in :mod:`attnseg_monai.io.atomic`.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .suffixes import IMAGE_EXTENSIONS

__all__ = [
    "ImageHeader",
    "encode_png",
    "is_image_file",
    "list_image_files",
    "read_header",
    "read_pixels",
]

logger = logging.getLogger(__name__)


#: Channels of each PIL mode as MONAI's PILReader loads it (a palette image loads as its indices).
_MODE_CHANNELS = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I": 1,
    "F": 1,
    "I;16": 1,
    "I;16L": 1,
    "I;16B": 1,
    "I;16N": 1,
    "LA": 2,
    "La": 2,
    "PA": 2,
    "RGB": 3,
    "YCbCr": 3,
    "LAB": 3,
    "HSV": 3,
    "RGBA": 4,
    "RGBa": 4,
    "RGBX": 4,
    "CMYK": 4,
}


def encode_png(array: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode a 2D (grey) or HxWx3 (RGB) array as PNG bytes; uint16 grey arrays become 16-bit PNGs.

    The array is indexed (row, column), i.e. (height, width), as numpy and PIL use it. ``compress_level`` is
    zlib's (0-9; 3 is about twice as fast as 6 for 10% larger files).

    Raises:
        ValueError: for other shapes or dtypes (only uint8, and uint16 for grey, are written).
    """
    arr = np.ascontiguousarray(array)
    grey = arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16)
    rgb = arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
    if not (grey or rgb):
        raise ValueError(
            f"encode_png takes a 2D uint8/uint16 array or an HxWx3 uint8 array, got shape {arr.shape} "
            f"and dtype {arr.dtype}."
        )
    image = Image.fromarray(arr)
    buffer = io.BytesIO()
    # fixed settings so the same pixels give the same bytes with the same zlib
    image.save(buffer, format="PNG", compress_level=int(compress_level), optimize=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: ``width`` and ``height`` in pixels, ``channels``, the PIL ``mode`` and format."""

    width: int
    height: int
    channels: int
    mode: str
    format: str

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return (self.width, self.height)


def _itk_header(path: Path) -> ImageHeader:
    import itk  # optional fallback for TIFF variants PIL cannot open

    reader = itk.ImageFileReader.New(FileName=str(path))
    reader.UpdateOutputInformation()
    out = reader.GetOutput()
    region = out.GetLargestPossibleRegion().GetSize()
    if out.GetImageDimension() != 2:
        raise ValueError(f"expected a 2D image, found {out.GetImageDimension()} dimensions")
    channels = int(out.GetNumberOfComponentsPerPixel())
    return ImageHeader(int(region[0]), int(region[1]), channels, f"itk:{channels}", "ITK")


def read_header(path: str | os.PathLike) -> ImageHeader:
    """Size, channel count and mode of a 2D image file without decoding its pixels.

    PIL is tried first (PNG, JPEG, BMP, most TIFFs); ITK is the fallback for TIFF variants PIL cannot open.

    Raises:
        OSError: if the file is missing, empty or not a readable image.
    """
    p = Path(path)
    try:
        with Image.open(p) as image:
            channels = _MODE_CHANNELS.get(image.mode, len(image.getbands()))
            n_frames = getattr(image, "n_frames", 1)
            if n_frames > 1:
                raise OSError(f"{n_frames} frames/pages: expected a single 2D image")
            return ImageHeader(image.width, image.height, channels, image.mode, image.format or "")
    except (OSError, ValueError, SyntaxError) as pil_error:
        if p.suffix.lower() in (".tif", ".tiff") and p.is_file() and p.stat().st_size > 0:
            try:
                return _itk_header(p)
            except Exception:  # noqa: BLE001 - report PIL's reason, which is the more telling one
                pass
        raise OSError(str(pil_error)) from pil_error


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Decode a 2D image file into a numpy array indexed (row, column[, channel]).

    Raises:
        OSError: if the file cannot be decoded (missing, truncated, corrupt).
    """
    p = Path(path)
    try:
        with Image.open(p) as image:
            image.load()
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError) as pil_error:
        if p.suffix.lower() in (".tif", ".tiff") and p.is_file():
            try:
                import itk

                return np.asarray(itk.imread(str(p)))
            except Exception:  # noqa: BLE001 - report PIL's reason
                pass
        raise OSError(str(pil_error)) from pil_error


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a visible file with one of :data:`IMAGE_EXTENSIONS`."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)
