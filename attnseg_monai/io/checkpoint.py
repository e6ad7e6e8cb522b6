"""Reading checkpoints safely: ``torch.load(..., weights_only=True)`` only, with errors that name the file.

A file whose unpickling would import or call Python objects is refused with :class:`UnsafeCheckpointError` (nothing
is run); a missing, empty, truncated or foreign file raises :class:`CheckpointReadError`. Every loader of the
package (the bundles' strict weight loader, resumption, export, ``attnseg``) reads through
:func:`load_checkpoint_file`.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "RECORD_SUFFIX",
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "load_checkpoint_file",
    "record_path",
]

#: endings of checkpoint files
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
#: ending of the record written beside each checkpoint (:class:`attnseg_monai.bundle.BundleRecord`)
RECORD_SUFFIX = ".record.json"


def record_path(checkpoint: str | os.PathLike) -> Path:
    """The record file of a checkpoint: ``models/model.pt`` -> ``models/model.record.json``."""
    p = Path(checkpoint)
    return p.with_name(p.stem + RECORD_SUFFIX)


class CheckpointReadError(ValueError):
    """A checkpoint file that is missing, truncated or not a PyTorch checkpoint."""


class UnsafeCheckpointError(CheckpointReadError):
    """A checkpoint whose unpickling would import or call Python objects (refused, never executed)."""


def load_checkpoint_file(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Args:
        path: the checkpoint file.
        mmap: memory-map the tensors (zip checkpoints only; cheap validation of large files).

    Raises:
        CheckpointReadError: missing, empty, truncated or not a checkpoint (message names the file).
        UnsafeCheckpointError: the file would import or call Python objects when unpickled (refused, nothing run).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointReadError(f"{p}: checkpoint file not found.")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointReadError(f"{p}: empty checkpoint file (0 bytes).")
    with open(p, "rb") as fh:
        head = fh.read(4)
    is_zip = head.startswith(b"PK")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointReadError(
            f"{p}: not a readable PyTorch checkpoint (neither a zip archive nor a pickle stream)."
        )
    if is_zip and not zipfile.is_zipfile(p):
        raise CheckpointReadError(f"{p}: truncated or corrupt checkpoint ({size} bytes, zip directory missing).")
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Unsupported global" in str(exc) or "Unsupported operand" in str(exc) or "WeightsUnpickler" in str(exc):
            raise UnsafeCheckpointError(
                f"{p}: refused: unpickling it would import or call Python objects; only weights and plain "
                f"containers are loaded (torch.load weights_only=True): {first}"
            ) from exc
        raise CheckpointReadError(f"{p}: not a readable checkpoint ({first}).") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointReadError(f"{p}: truncated or corrupt checkpoint ({type(exc).__name__}: {first}).") from exc
