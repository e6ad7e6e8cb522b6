"""DICOM series folders: the one test of whether a folder holds a DICOM series, used by every reader."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["dicom_files", "is_dicom_folder"]


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder``: ``.dcm`` files, and files of any name with the ``DICM`` preamble."""
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
    return p.is_dir() and bool(dicom_files(p))
