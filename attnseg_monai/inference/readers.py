"""Input readers for batch prediction, chosen by file ending behind one interface.

Each :class:`CaseReader` checks a file first (present, not empty, content matching its name, decodable) and raises an
:class:`~attnseg_monai.inference.errors.InputError` that names the file and says what is wrong; it then reads the
file with the MONAI reader the bundles themselves use, so an image reaches a bundle's preprocessing exactly as
``LoadImage(image_only=True)`` would deliver it (2D images indexed (x, y), MONAI's ``PILReader`` convention; volumes
with the affine in RAS, ITK files converted from LPS).

| reader | endings | MONAI reader |
|---|---|---|
| :class:`PillowImageReader` | ``.png .jpg .jpeg .bmp .tif .tiff`` | ``PILReader`` (``ITKReader`` for odd TIFFs) |
| :class:`NiftiReader` | ``.nii .nii.gz`` | ``NibabelReader`` |
| :class:`MetaImageReader` | ``.mha .mhd`` | ``ITKReader`` |
| :class:`NrrdReader` | ``.nrrd .nhdr`` | ``ITKReader`` |
| :class:`DicomSeriesReader` | a folder of DICOM files | ``ITKReader`` (one series per folder) |

Whole-slide images (``.svs`` and other slide formats, pyramidal or very large tiled TIFFs) are recognised by
:func:`is_whole_slide` and read tile by tile in :mod:`attnseg_monai.inference.wsi`.
"""

from __future__ import annotations

import os
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from monai.data import MetaTensor
from monai.data.image_reader import ImageReader, ITKReader, NibabelReader, PILReader
from monai.transforms import LoadImage
from PIL import Image

from ..io.dicom import dicom_files
from ..io.suffixes import (
    ENDING_FOR,
    EXPECTED_CONTENT,
    FORMAT_NAMES,
    WSI_SUFFIXES,
    image_suffix,
    sniff_format,
)
from .errors import InputError, describe_error

__all__ = [
    "READERS",
    "CaseReader",
    "DicomSeriesReader",
    "MetaImageReader",
    "NiftiReader",
    "NrrdReader",
    "PillowImageReader",
    "read_image",
    "reader_for",
    "supported_suffixes",
]


def _pil_converter(image: Image.Image) -> Image.Image:
    """Palette and 1-bit images are loaded as their colours (MONAI's PILReader would load palette indices)."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "1":
        return image.convert("L")
    return image


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image file (a DICOM series folder must hold DICOM files)")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")


def _check_content(path: Path, suffix: str) -> str | None:
    """Compare the content with what the ending promises; returns the sniffed format."""
    try:
        found = sniff_format(path)
    except OSError as exc:
        raise InputError(path, f"cannot be opened ({describe_error(exc)})") from exc
    expected = EXPECTED_CONTENT.get(suffix)
    if expected is None or found == expected:
        return found
    if expected == "nifti" and suffix == ".nii.gz" and found == "gzip":
        raise InputError(path, "gzip file that does not hold a NIfTI header (or a truncated gzip stream)")
    if expected == "nifti" and suffix == ".nii.gz" and found == "nifti":
        return found
    if found is None:
        raise InputError(
            path, f"not a {FORMAT_NAMES[expected]} file: its content is not recognised (corrupt or another format)"
        )
    hint = f": rename it to *{ENDING_FOR[found]}" if found in ENDING_FOR else ""
    raise InputError(
        path, f"wrong file ending: the content is {FORMAT_NAMES.get(found, found)} but the name ends in {suffix}{hint}"
    )


class CaseReader(ABC):
    """One input format: check a file, then read it as MONAI's ``LoadImage(image_only=True)`` would.

    Subclasses set ``name``, ``suffixes`` (lower case, with the dot) and ``monai_reader()``.

    Example::

        >>> reader = reader_for("slide_tile.png")          # 2D: PillowImageReader
        >>> img = reader.read("slide_tile.png")            # MetaTensor (x, y, C)
        >>> reader_for("ct.nii.gz").read("ct.nii.gz").shape  # 3D: (x, y, z), affine in img.affine
    """

    name: ClassVar[str] = "base"
    suffixes: ClassVar[tuple[str, ...]] = ()

    def matches(self, path: str | os.PathLike) -> bool:
        """Whether this reader handles ``path`` (by its ending)."""
        return image_suffix(path) in self.suffixes

    @abstractmethod
    def monai_reader(self) -> ImageReader:
        """The MONAI reader used for the pixels and the geometry."""

    def check(self, path: str | os.PathLike) -> None:
        """Raise :class:`InputError` if ``path`` is missing, empty, or its content does not match its ending."""
        p = Path(path)
        _check_file(p)
        _check_content(p, image_suffix(p))

    def read(self, path: str | os.PathLike, *, dtype: Any = np.float32, loader: LoadImage | None = None) -> MetaTensor:
        """Check and read ``path``.

        Args:
            path: the file (or DICOM folder).
            dtype: pixel type of the result (``None`` keeps the file's).
            loader: a bundle's own ``LoadImage`` (with its reader settings) to read with instead of this reader's.

        Raises:
            InputError: with the reason the file cannot be read.
        """
        self.check(path)
        return self._load(Path(path), dtype=dtype, loader=loader)

    def _load(self, path: Path, *, dtype: Any, loader: LoadImage | None) -> MetaTensor:
        try:
            if loader is not None:
                img = loader(str(path))
            else:
                img = LoadImage(reader=self.monai_reader(), image_only=True, dtype=dtype)(str(path))
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - every reader failure is reported as this file's problem
            raise InputError(path, f"truncated or corrupt image data ({describe_error(exc)})") from exc
        if not isinstance(img, MetaTensor):
            img = MetaTensor(img)
        if img.numel() == 0:
            raise InputError(path, f"image has no pixels (shape {tuple(img.shape)})")
        return img


class PillowImageReader(CaseReader):
    """PNG, JPEG, BMP and TIFF images through PIL (MONAI's ``PILReader``, (x, y[, C]) indexing).

    The check decodes the whole image, so truncated or damaged files are reported before the batch reaches them;
    palette images are read as their colours. TIFFs PIL cannot open (floating-point, many samples) go through ITK.
    """

    name = "image2d"
    suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

    def monai_reader(self) -> ImageReader:
        return PILReader(converter=_pil_converter)

    def check(self, path: str | os.PathLike) -> None:
        self._decode(Path(path))

    def _decode(self, path: Path) -> Image.Image | None:
        """Check the file and decode it once; ``None`` for a TIFF PIL cannot decode but ITK can read.

        Raises:
            InputError: for a missing, empty, multi-page, damaged or mislabelled file.
        """
        CaseReader.check(self, path)
        try:
            with Image.open(path) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    raise InputError(
                        path, f"holds {frames} pages/frames; expected one 2D image (save each page as its own file)"
                    )
                image.load()
                return image  # loaded: usable after the file is closed
        except InputError:
            raise
        except Image.DecompressionBombError as exc:
            raise InputError(
                path, f"too large for a plain image ({describe_error(exc)}); save it as a tiled TIFF"
            ) from exc
        except (OSError, ValueError, SyntaxError, zlib.error) as exc:
            if image_suffix(path) in (".tif", ".tiff") and self._itk_can_read(path):
                return None
            raise InputError(path, f"corrupt or truncated image data ({describe_error(exc)})") from exc

    @staticmethod
    def _itk_can_read(path: Path) -> bool:
        try:
            import itk

            reader = itk.ImageFileReader.New(FileName=str(path))
            reader.UpdateOutputInformation()
            return True
        except Exception:  # noqa: BLE001 - PIL's reason is reported
            return False

    def read(self, path: str | os.PathLike, *, dtype: Any = np.float32, loader: LoadImage | None = None) -> MetaTensor:
        """Check and read ``path``, decoding it once: the image decoded by the check is what MONAI's ``PILReader``
        turns into the MetaTensor (a bundle's own ``loader`` reads the file itself)."""
        p = Path(path)
        image = self._decode(p)
        if loader is None and image is None:  # a TIFF only ITK reads
            loader = LoadImage(reader=ITKReader(), image_only=True, dtype=dtype)
        elif loader is None:
            loader = LoadImage(reader=_DecodedPILReader(image, converter=_pil_converter), image_only=True, dtype=dtype)
        return self._load(p, dtype=dtype, loader=loader)


class _DecodedPILReader(PILReader):
    """MONAI's ``PILReader`` over an image already decoded (the check's), so the file is decoded once."""

    def __init__(self, image: Image.Image, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._image = image

    def read(self, data: Any, **kwargs: Any) -> Image.Image:
        return self.converter(self._image) if self.converter is not None else self._image


class NiftiReader(CaseReader):
    """NIfTI-1/2 volumes (``.nii``, ``.nii.gz``) through MONAI's ``NibabelReader``; the affine is the file's."""

    name = "nifti"
    suffixes = (".nii", ".nii.gz")

    def monai_reader(self) -> ImageReader:
        return NibabelReader()

    def check(self, path: str | os.PathLike) -> None:
        super().check(path)
        import nibabel

        try:
            img = nibabel.load(str(path))
            shape = img.shape
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad headers
            raise InputError(path, f"unreadable NIfTI header ({describe_error(exc)})") from exc
        if len(shape) < 2 or min(shape) < 1:
            raise InputError(path, f"NIfTI image has shape {shape}; expected 2 to 4 dimensions with pixels")
        if image_suffix(path) == ".nii":  # before any buffer of the header's size is allocated
            header = img.header
            needed = int(np.prod(shape, dtype=np.float64) * header.get_data_dtype().itemsize)
            needed += max(int(header.get_data_offset()), int(getattr(header, "single_vox_offset", 0)))
            size = Path(path).stat().st_size
            if needed > size:
                raise InputError(
                    path,
                    f"truncated or corrupt image data: the header describes {shape} ({needed} bytes), the file has "
                    f"{size}",
                )


class MetaImageReader(CaseReader):
    """MetaImage volumes (``.mha``; ``.mhd`` with its data file) through MONAI's ``ITKReader`` (LPS -> RAS)."""

    name = "metaimage"
    suffixes = (".mha", ".mhd")

    def monai_reader(self) -> ImageReader:
        return ITKReader()


class NrrdReader(CaseReader):
    """NRRD volumes (``.nrrd``; ``.nhdr`` with its data file) through MONAI's ``ITKReader`` (LPS -> RAS)."""

    name = "nrrd"
    suffixes = (".nrrd", ".nhdr")

    def monai_reader(self) -> ImageReader:
        return ITKReader()


class DicomSeriesReader(CaseReader):
    """A folder holding one DICOM series, through MONAI's ``ITKReader`` (slices sorted by position, LPS -> RAS).

    A folder with several series is refused (ITK would silently read the first); put each series in its own folder.
    """

    name = "dicom"
    suffixes = ()

    def matches(self, path: str | os.PathLike) -> bool:
        return Path(path).is_dir()

    def monai_reader(self) -> ImageReader:
        return ITKReader()

    def check(self, path: str | os.PathLike) -> None:
        p = Path(path)
        if not p.is_dir():
            raise InputError(p, "a DICOM series must be given as the folder holding its files")
        files = dicom_files(p)
        if not files:
            raise InputError(p, "folder holds no DICOM file (.dcm or files with the DICM preamble)")
        empty = [f.name for f in files if f.stat().st_size == 0]
        if empty:
            raise InputError(p, f"empty DICOM file(s): {', '.join(empty[:5])}")
        try:
            import itk

            names = itk.GDCMSeriesFileNames.New()
            names.SetUseSeriesDetails(True)
            names.AddSeriesRestriction("0008|0021")
            names.SetGlobalWarningDisplay(False)
            names.SetDirectory(str(p))
            uids = list(names.GetSeriesUIDs())
            in_series = {Path(f).name for uid in uids for f in names.GetFileNames(uid)}
        except Exception as exc:  # noqa: BLE001 - ITK raises RuntimeError with long texts
            raise InputError(p, f"DICOM files cannot be parsed ({describe_error(exc)})") from exc
        if not uids:
            raise InputError(p, "no readable DICOM image series in the folder")
        if len(uids) > 1:
            raise InputError(p, f"folder holds {len(uids)} DICOM series; put each series in its own folder")
        # GDCM leaves out files it cannot parse; reading on would silently drop those slices
        left_out = [f.name for f in files if f.name not in in_series]
        if left_out:
            shown = ", ".join(left_out[:5]) + (" ..." if len(left_out) > 5 else "")
            raise InputError(
                p,
                f"{len(left_out)} DICOM file(s) cannot be read as part of the series ({shown}): corrupt, truncated or "
                "not an image of this series; repair or remove them",
            )


#: The readers, tried in this order by :func:`reader_for`.
READERS: tuple[CaseReader, ...] = (
    NiftiReader(),
    PillowImageReader(),
    MetaImageReader(),
    NrrdReader(),
    DicomSeriesReader(),
)


def supported_suffixes() -> list[str]:
    """Every file ending a reader handles, plus the whole-slide endings."""
    out: list[str] = []
    for reader in READERS:
        out.extend(reader.suffixes)
    return sorted(set(out) | set(WSI_SUFFIXES))


def reader_for(path: str | os.PathLike) -> CaseReader:
    """The reader for ``path``: a folder is a DICOM series, a file is chosen by its ending.

    Raises:
        InputError: for an ending no reader handles (the message lists the supported ones).
    """
    p = Path(path)
    for reader in READERS:
        if reader.matches(p):
            return reader
    suffix = image_suffix(p) or "(none)"
    raise InputError(p, f"unsupported file type {suffix}; supported: {', '.join(supported_suffixes())}")


def read_image(path: str | os.PathLike, *, dtype: Any = np.float32) -> MetaTensor:
    """Check and read any supported image file or DICOM folder (see :func:`reader_for`).

    Raises:
        InputError: if it cannot be read.
    """
    return reader_for(path).read(path, dtype=dtype)
