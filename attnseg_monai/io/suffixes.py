"""File endings and contents, one table per purpose, and the functions that read them.

| table | what |
|---|---|
| :data:`IMAGE_EXTENSIONS` | 2D image files the data layer and the readers take |
| :data:`VOLUME_EXTENSIONS` | volume files (NIfTI, NRRD, MetaImage), longest first |
| :data:`NIBABEL_EXTENSIONS`, :data:`NRRD_EXTENSIONS`, :data:`ITK_EXTENSIONS` | volume headers, by reading library |
| :data:`TRANSUNET_EXTENSIONS` | TransUNet's preprocessed Synapse files (``.npz`` slices, ``.h5`` volumes) |
| :data:`BUNDLE_LOADER_SUFFIXES` | inputs ``attnseg`` passes to a bundle that loads files with its own transform |
| :data:`MONUSEG_IMAGE_EXTENSIONS` | MoNuSeg tissue images |
| :data:`WSI_SUFFIXES` | whole-slide formats (always read as slides) |
| :data:`EXPECTED_CONTENT`, :data:`ENDING_FOR`, :data:`FORMAT_NAMES` | what an ending promises, checked by content |
| :data:`CHECKPOINT_SUFFIXES <attnseg_monai.io.checkpoint.CHECKPOINT_SUFFIXES>` | checkpoints (``io/checkpoint.py``) |
| :data:`LABEL_EXTENSIONS <attnseg_monai.io.writers.LABEL_EXTENSIONS>` | lossless label outputs, with their writers |

:func:`split_image_name` / :func:`image_suffix` know two-part endings (``.nii.gz``, ``.npy.h5``);
:func:`strip_volume_extension` drops a volume ending; :func:`sniff_format` tells a file's format from its first bytes.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

__all__ = [
    "BUNDLE_LOADER_SUFFIXES",
    "ENDING_FOR",
    "EXPECTED_CONTENT",
    "FORMAT_NAMES",
    "IMAGE_EXTENSIONS",
    "ITK_EXTENSIONS",
    "MONUSEG_IMAGE_EXTENSIONS",
    "NIBABEL_EXTENSIONS",
    "NRRD_EXTENSIONS",
    "TRANSUNET_EXTENSIONS",
    "TRANSUNET_SLICE_EXTENSIONS",
    "TRANSUNET_VOLUME_EXTENSIONS",
    "VOLUME_EXTENSIONS",
    "WSI_MIN_PIXELS",
    "WSI_SUFFIXES",
    "has_ending",
    "output_ending",
    "image_suffix",
    "sniff_format",
    "split_image_name",
    "strip_volume_extension",
]

#: File endings (lower case) of the 2D image formats the readers pick up.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: File endings (lower case) of the volume formats the CT readers pick up, longest first.
VOLUME_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Volume files whose header ``data.volumes`` reads through nibabel (NIfTI-1/2 and Analyze pairs).
NIBABEL_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz", ".hdr", ".img", ".img.gz")
#: NRRD files (read through pynrrd when installed, else ITK).
NRRD_EXTENSIONS: tuple[str, ...] = (".nrrd", ".nhdr")
#: Volume files ``data.volumes`` reads through ITK: MetaImage, and NRRD without pynrrd.
ITK_EXTENSIONS: tuple[str, ...] = (".mha", ".mhd", *NRRD_EXTENSIONS)
#: TransUNet's preprocessed Synapse training slices (arrays ``image``/``label`` in one file).
TRANSUNET_SLICE_EXTENSIONS: tuple[str, ...] = (".npz",)
#: TransUNet's preprocessed Synapse test volumes (``.npy.h5``/``.h5`` datasets ``image``/``label``).
TRANSUNET_VOLUME_EXTENSIONS: tuple[str, ...] = (".h5", ".hdf5")
#: TransUNet's preprocessed Synapse files: ``.npz`` training slices, ``.npy.h5``/``.h5`` test volumes.
TRANSUNET_EXTENSIONS: tuple[str, ...] = TRANSUNET_SLICE_EXTENSIONS + TRANSUNET_VOLUME_EXTENSIONS
#: Inputs taken, besides the readers' own endings, when a bundle loads files with its own transform.
BUNDLE_LOADER_SUFFIXES: tuple[str, ...] = (*TRANSUNET_EXTENSIONS, ".npy")
#: MoNuSeg tissue images (the annotations are ``.xml``).
MONUSEG_IMAGE_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".png")

#: Endings of whole-slide formats (always read as slides); ``.tif``/``.tiff`` are slides when pyramidal or huge.
WSI_SUFFIXES: tuple[str, ...] = (".svs", ".ndpi", ".scn", ".bif", ".mrxs", ".vms", ".vmu", ".svslide")
#: A single-level tiled TIFF at least this many pixels large is read as a slide.
WSI_MIN_PIXELS = 8192 * 8192

#: Readable names of the formats :func:`sniff_format` tells apart.
FORMAT_NAMES = {
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
#: The content each ending promises (:func:`sniff_format`'s names).
EXPECTED_CONTENT = {
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
#: The ending a content should have (the hint when a file is misnamed).
ENDING_FOR = {
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


def strip_volume_extension(name: str) -> str:
    """``name`` without its volume file ending (``img0001.nii.gz`` -> ``img0001``); unchanged if it has none."""
    lower = name.lower()
    for ending in VOLUME_EXTENSIONS:
        if lower.endswith(ending):
            return name[: -len(ending)]
    return name


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


def has_ending(path: str | os.PathLike, endings: tuple[str, ...]) -> bool:
    """Whether the file name of ``path`` ends with one of ``endings`` (case-insensitive)."""
    return Path(path).name.lower().endswith(endings)


def output_ending(name: str) -> str:
    """The lower-case ending of a file name or of an ending given with or without its dot (``.nii.gz`` whole)."""
    text = str(name).lower()
    if "." not in text:
        text = "." + text
    if text.endswith(".nii.gz"):
        return ".nii.gz"
    return "." + text.rsplit(".", 1)[-1]
