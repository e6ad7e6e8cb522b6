"""Files: atomic writes and permissions, checksums, safe names and paths, weights-only checkpoints, image headers,
and the writers of every output kind (labels, probabilities, attention maps, overlays, slide TIFFs).

The one place for these mechanisms: the data, inference, bundle and handler code all call it, and it imports no
other package of attnseg_monai.
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
    remove_stale_temporaries,
    sha256_bytes,
    sha256_file,
    temporary_path,
)
from .checkpoint import CHECKPOINT_SUFFIXES, CheckpointReadError, UnsafeCheckpointError, load_checkpoint_file
from .images import ImageHeader, encode_png, read_header, read_pixels
from .nifti import SourceGeometryNibabelWriter, source_nifti_header
from .paths import UnsafePathError, output_path, safe_extract, safe_join, sanitize_name
from .writers import LABEL_WRITERS, PNGLabelWriter, TiffLabelWriter, label_saver

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "LABEL_WRITERS",
    "TEMP_MARKER",
    "CheckpointReadError",
    "ImageHeader",
    "PNGLabelWriter",
    "SourceGeometryNibabelWriter",
    "TiffLabelWriter",
    "UnsafeCheckpointError",
    "UnsafePathError",
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "cleanup_temporary",
    "encode_json",
    "encode_png",
    "file_mode",
    "label_saver",
    "load_checkpoint_file",
    "output_path",
    "read_header",
    "read_pixels",
    "remove_stale_temporaries",
    "safe_extract",
    "safe_join",
    "sanitize_name",
    "sha256_bytes",
    "sha256_file",
    "source_nifti_header",
    "temporary_path",
]
