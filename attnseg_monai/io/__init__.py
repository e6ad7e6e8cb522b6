"""Files: atomic writes, permissions, suffix tables and sniffing, DICOM detection, checkpoints, safe paths, writers.

The one place for these mechanisms; the data, inference, bundle and handler code all call it, and it imports no
other package of attnseg_monai:

- :mod:`.atomic`: the one atomic writer (``atomic_open``, ``atomic_write_bytes/json``, ``atomic_torch_save``;
  ``temporary_path`` + ``cleanup_temporary`` for outputs committed together), ``file_mode``, checksums;
- :mod:`.paths`: ``sanitize_name``, ``output_path`` (built on ``safe_join``), ``safe_extract``;
- :mod:`.checkpoint`: weights-only checkpoint reading (``load_checkpoint_file``) and the record's file name;
- :mod:`.suffixes`: the file-ending tables, one per purpose, ``split_image_name``/``image_suffix``, ``sniff_format``;
- :mod:`.dicom`: the one test of a DICOM series folder (``is_dicom_folder``, ``dicom_files``);
- :mod:`.images`: 2D image headers and PNG encoding; :mod:`.transunet`: TransUNet's ``.npz``/``.h5`` image readers;
- :mod:`.writers`, :mod:`.nifti`: the writers of every output kind (labels, probabilities, attention maps, overlays,
  slide TIFFs; NIfTI in the source geometry).
"""

from __future__ import annotations

from .atomic import (
    TEMP_MARKER,
    atomic_open,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    cleanup_temporary,
    encode_json,
    file_mode,
    fsync_dir,
    remove_stale_temporaries,
    sha256_bytes,
    sha256_file,
    temporary_path,
)
from .checkpoint import (
    CHECKPOINT_SUFFIXES,
    CheckpointReadError,
    UnsafeCheckpointError,
    load_checkpoint_file,
    record_path,
)
from .dicom import dicom_files, is_dicom_folder
from .images import ImageHeader, encode_png, read_header, read_pixels
from .nifti import SourceGeometryNibabelWriter, source_nifti_header
from .paths import UnsafePathError, output_path, safe_extract, safe_join, sanitize_name
from .suffixes import (
    IMAGE_EXTENSIONS,
    TRANSUNET_EXTENSIONS,
    VOLUME_EXTENSIONS,
    WSI_SUFFIXES,
    image_suffix,
    sniff_format,
    split_image_name,
    strip_volume_extension,
)
from .transunet import TransUNetH5Reader, TransUNetNpzReader
from .writers import LABEL_WRITERS, PNGLabelWriter, TiffLabelWriter, label_saver

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "LABEL_WRITERS",
    "TEMP_MARKER",
    "TRANSUNET_EXTENSIONS",
    "VOLUME_EXTENSIONS",
    "WSI_SUFFIXES",
    "CheckpointReadError",
    "ImageHeader",
    "PNGLabelWriter",
    "SourceGeometryNibabelWriter",
    "TiffLabelWriter",
    "TransUNetH5Reader",
    "TransUNetNpzReader",
    "UnsafeCheckpointError",
    "UnsafePathError",
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "cleanup_temporary",
    "dicom_files",
    "encode_json",
    "encode_png",
    "file_mode",
    "fsync_dir",
    "image_suffix",
    "is_dicom_folder",
    "label_saver",
    "load_checkpoint_file",
    "output_path",
    "read_header",
    "read_pixels",
    "record_path",
    "remove_stale_temporaries",
    "safe_extract",
    "safe_join",
    "sanitize_name",
    "sha256_bytes",
    "sha256_file",
    "sniff_format",
    "source_nifti_header",
    "split_image_name",
    "strip_volume_extension",
    "temporary_path",
]
