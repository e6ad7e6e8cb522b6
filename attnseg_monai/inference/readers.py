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

import gzip
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

from .errors import InputError

__all__ = [
    "READERS",
    "WSI_SUFFIXES",
    "CaseReader",
    "DicomSeriesReader",
    "MetaImageReader",
    "NiftiReader",
    "NrrdReader",
    "PillowImageReader",
    "describe_error",
    "image_suffix",
    "is_dicom_folder",
    "is_whole_slide",
    "read_image",
    "reader_for",
    "sniff_format",
    "split_image_name",
    "supported_suffixes",
]

#: Endings of whole-slide formats (always read as slides); ``.tif``/``.tiff`` are slides when pyramidal or huge.
WSI_SUFFIXES: tuple[str, ...] = (".svs", ".ndpi", ".scn", ".bif", ".mrxs", ".vms", ".vmu", ".svslide")
#: A single-level tiled TIFF at least this many pixels large is read as a slide.
WSI_MIN_PIXELS = 8192 * 8192

_FORMAT_NAMES = {
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "bmp": "BMP",
    "nifti": "NIfTI",
    "gzip": "gzip (not NIfTI inside)",
    "nrrd": "NRRD",
    "metaimage": "MetaImage",
    "dicom": "DICOM",
    "zip": "ZIP",
    "json": "JSON/text",
    "pdf": "PDF",
}
#: The content each ending promises, and the ending that content should have.
_EXPECTED = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
    ".dcm": "dicom",
    **{s: "tiff" for s in (".svs", ".ndpi", ".scn", ".bif", ".svslide")},
}
_ENDING_FOR = {
    "png": ".png",
    "jpeg": ".jpg",
    "tiff": ".tif",
    "bmp": ".bmp",
    "nifti": ".nii / .nii.gz",
    "nrrd": ".nrrd",
    "metaimage": ".mha",
    "dicom": ".dcm",
}
_MULTI_SUFFIXES = (".nii.gz", ".npy.h5")


def split_image_name(path: str | os.PathLike) -> tuple[str, str]:
    """``(stem, ending)`` of an image file name, aware of two-part endings (``a.nii.gz`` -> ``("a", ".nii.gz")``)."""
    name = Path(path).name
    lower = name.lower()
    for multi in _MULTI_SUFFIXES:
        if lower.endswith(multi) and len(name) > len(multi):
            return name[: -len(multi)], lower[-len(multi) :]
    suffix = Path(name).suffix
    if suffix and len(name) > len(suffix):
        return name[: -len(suffix)], suffix.lower()
    return name, ""


def image_suffix(path: str | os.PathLike) -> str:
    """The lower-case ending of an image file name (``.nii.gz`` counted whole); ``""`` for folders."""
    return "" if Path(path).is_dir() else split_image_name(path)[1]


def _is_nifti_header(head: bytes) -> bool:
    if len(head) < 348:
        return False
    for order in ("little", "big"):
        size = int.from_bytes(head[:4], order)
        if size == 348 and head[344:347] in (b"n+1", b"ni1"):
            return True
        if size == 540 and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def sniff_format(path: str | os.PathLike) -> str | None:
    """The format a file's first bytes announce (``"png"``, ``"nifti"``, ``"dicom"``...), or ``None`` if unknown.

    gzip files are opened to tell a compressed NIfTI (``"nifti"``) from other gzip content (``"gzip"``).

    Raises:
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM":
        return "bmp"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(544)
        except (OSError, EOFError, zlib.error):
            return "gzip"
        return "nifti" if _is_nifti_header(inner) else "gzip"
    if _is_nifti_header(head):
        return "nifti"
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if b"NDims" in head and (b"ObjectType" in head or b"ElementType" in head or b"DimSize" in head):
        return "metaimage"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:5] == b"%PDF-":
        return "pdf"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return None


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """A one-line description of an exception: its innermost cause, type and first line (or ITK's description).

    MONAI and ITK wrap errors in long multi-line messages; the predictor reports this line per failed case.
    """
    inner = exc
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    text = str(inner).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    described = [ln for ln in lines if ln.lower().startswith("description:")]
    line = described[0].split(":", 1)[1].strip() if described else (lines[0] if lines else type(inner).__name__)
    name = type(inner).__name__
    if name.islower():  # struct.error, zlib.error: name the module too
        name = f"{type(inner).__module__}.{name}"
    line = f"{name}: {line}" if not line.startswith(name) else line
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
    expected = _EXPECTED.get(suffix)
    if expected is None or found == expected:
        return found
    if expected == "nifti" and suffix == ".nii.gz" and found == "gzip":
        raise InputError(path, "gzip file that does not hold a NIfTI header (or a truncated gzip stream)")
    if expected == "nifti" and suffix == ".nii.gz" and found == "nifti":
        return found
    if found is None:
        raise InputError(
            path, f"not a {_FORMAT_NAMES[expected]} file: its content is not recognised (corrupt or another format)"
        )
    hint = f": rename it to *{_ENDING_FOR[found]}" if found in _ENDING_FOR else ""
    raise InputError(
        path, f"wrong file ending: the content is {_FORMAT_NAMES.get(found, found)} but the name ends in {suffix}{hint}"
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
        super().check(path)
        p = Path(path)
        try:
            with Image.open(p) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    raise InputError(
                        p, f"holds {frames} pages/frames; expected one 2D image (save each page as its own file)"
                    )
                image.load()
        except InputError:
            raise
        except Image.DecompressionBombError as exc:
            raise InputError(
                p, f"too large for a plain image ({describe_error(exc)}); save it as a tiled TIFF"
            ) from exc
        except (OSError, ValueError, SyntaxError, zlib.error) as exc:
            if image_suffix(p) in (".tif", ".tiff") and self._itk_can_read(p):
                return
            raise InputError(p, f"corrupt or truncated image data ({describe_error(exc)})") from exc

    @staticmethod
    def _itk_can_read(path: Path) -> bool:
        try:
            import itk

            reader = itk.ImageFileReader.New(FileName=str(path))
            reader.UpdateOutputInformation()
            return True
        except Exception:  # noqa: BLE001 - PIL's reason is reported
            return False

    def _load(self, path: Path, *, dtype: Any, loader: LoadImage | None) -> MetaTensor:
        if loader is None and image_suffix(path) in (".tif", ".tiff"):
            try:
                with Image.open(path) as image:
                    image.load()
            except (OSError, ValueError, SyntaxError):
                return CaseReader._load(
                    self, path, dtype=dtype, loader=LoadImage(reader=ITKReader(), image_only=True, dtype=dtype)
                )
        return super()._load(path, dtype=dtype, loader=loader)


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


def _dicom_files(folder: Path) -> list[Path]:
    found = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() == ".dcm":
            found.append(p)
            continue
        try:
            with open(p, "rb") as handle:
                head = handle.read(132)
        except OSError:
            continue
        if len(head) == 132 and head[128:132] == b"DICM":
            found.append(p)
    return found


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding DICOM files (``.dcm`` or the ``DICM`` preamble) directly."""
    p = Path(path)
    return p.is_dir() and bool(_dicom_files(p))


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
        files = _dicom_files(p)
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


def read_image(path: str | os.PathLike, *, dtype: Any = np.float32) -> MetaTensor:
    """Check and read any supported image file or DICOM folder (see :func:`reader_for`).

    Raises:
        InputError: if it cannot be read.
    """
    return reader_for(path).read(path, dtype=dtype)
