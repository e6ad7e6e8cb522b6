"""Small file helpers shared by the data layer: atomic writes, checksums, PNG encoding, image headers, caches.

Everything written by the data layer goes through :func:`atomic_write_bytes`: the bytes land in a temporary file
in the destination folder and are moved into place with :func:`os.replace`, so a reader never sees half a file and
an interrupted run leaves no broken output behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageHeader",
    "atomic_write_bytes",
    "atomic_write_json",
    "encode_json",
    "encode_png",
    "is_image_file",
    "list_image_files",
    "read_header",
    "read_pixels",
    "resolve_cache_dir",
    "sha256_bytes",
    "sha256_file",
]

logger = logging.getLogger(__name__)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# files get the permissions an ordinary open() would give them (mkstemp alone would make them owner-only)
_FILE_MODE = 0o666 & ~_current_umask()

#: File endings (lower case) of the 2D image formats the readers pick up.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

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


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, then :func:`os.replace`).

    Parent folders are created. Returns the path written.

    Raises:
        OSError: if the folder cannot be created or written; the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def encode_json(obj: Any) -> bytes:
    """``obj`` as indented JSON (keys in insertion order, UTF-8, trailing newline): what :func:`atomic_write_json`
    writes, for callers that need the bytes first (checksums, sample manifests)."""
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (see :func:`encode_json`) to ``path`` atomically (see
    :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, encode_json(obj))


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


def _writable(folder: Path) -> bool:
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK)


def resolve_cache_dir(root: str | os.PathLike, cache_dir: str | os.PathLike | None, namespace: str) -> Path:
    """Folder where derived files (rasterised or merged masks) of the data set at ``root`` are cached.

    ``cache_dir`` when given; otherwise ``<root>/.attnseg_cache``, or, when ``root`` is read-only, a folder under
    ``$XDG_CACHE_HOME`` (default ``~/.cache``) named after a hash of ``root``. ``namespace`` (the reader name) is
    appended so readers never share files.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().absolute() / namespace
    root_path = Path(root).expanduser().absolute()
    local = root_path / ".attnseg_cache"
    if _writable(local):
        return local / namespace
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnseg_monai"
    fallback = base / sha256_bytes(str(root_path).encode("utf-8"))[:16] / namespace
    logger.warning("%s is not writable; caching derived masks in %s instead.", root_path, fallback)
    return fallback
