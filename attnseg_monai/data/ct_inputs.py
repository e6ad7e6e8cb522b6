"""CT volumes to segment: what a path names when it is not a known data set layout.

One rule for the CT bundles' inference datalists (:func:`~attnseg_monai.data.synapse_inference_items`,
:func:`~attnseg_monai.data.pancreas_inference_items`): one volume file, one DICOM series folder, or the volume files
and DICOM series sub-folders of a folder (not searched deeper).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..io.dicom import is_dicom_folder
from .ct_layouts import is_volume_file

__all__ = ["volume_inputs"]


def volume_inputs(
    path: str | os.PathLike, *, exclude: Sequence[str | os.PathLike] = (), extra_suffixes: Sequence[str] = ()
) -> list[dict[str, str]]:
    """``[{"image": ...}]`` for the volumes ``path`` names, sorted, with resolved paths.

    - a folder directly holding DICOM files (``.dcm``, or any name with the ``DICM`` preamble): one DICOM series
      (read by ITK, which sorts the slices by position);
    - a file: itself, if it is a volume (NIfTI, NRRD, MetaImage, or one of ``extra_suffixes``);
    - any other folder: its volume files and its DICOM series sub-folders, except those in ``exclude`` (the output
      folder); hidden files and other files are left out.

    Args:
        path: a file or folder.
        exclude: folders never taken (compared after resolving).
        extra_suffixes: file endings taken besides the volume formats (TransUNet's ``.h5`` for danie).

    Raises:
        FileNotFoundError: if ``path`` does not exist, is a file of another kind, or names no volume.
    """
    root = Path(path)
    endings = tuple(s.lower() for s in extra_suffixes)
    kinds = ", ".join(["NIfTI", "NRRD", "MetaImage", *endings, "a DICOM series folder"])

    def is_volume(p: Path) -> bool:
        return is_volume_file(p) or (p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(endings))

    if is_dicom_folder(root):
        return [{"image": str(root.resolve())}]
    if root.is_file():
        if not is_volume(root):
            raise FileNotFoundError(f"{root}: not a volume this bundle reads ({kinds}).")
        return [{"image": str(root.resolve())}]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder.")
    skipped = {Path(e).resolve() for e in exclude}
    found = sorted(p for p in root.iterdir() if p.resolve() not in skipped and (is_volume(p) or is_dicom_folder(p)))
    if not found:
        raise FileNotFoundError(f"{root}: holds no volume ({kinds}).")
    return [{"image": str(p.resolve())} for p in found]
