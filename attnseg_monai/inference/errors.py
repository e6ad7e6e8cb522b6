"""Errors of the batch predictor: one class per thing that can be wrong, each saying what to do about it.

Every class derives from :class:`ValueError` (a bad input, bundle or checkpoint is a bad argument), so callers that
already catch ``ValueError`` keep working; the CLI turns them into a message and a non-zero exit code.
"""

from __future__ import annotations

import os

__all__ = [
    "describe_error",
    "innermost_cause",
    "BundleError",
    "CheckpointError",
    "ExperimentError",
    "InputError",
    "OutputConflictError",
    "UntrustedBundleError",
]


class InputError(ValueError):
    """An input file that cannot be segmented: missing, empty, truncated, of the wrong format or shape.

    Args:
        path: the offending file or folder.
        reason: what is wrong and, where possible, what to do (shown after ``<path>: ``).

    Example::

        >>> raise InputError("scans/a.png", "empty file (0 bytes)")  # 2D
        >>> raise InputError("ct/b.nii.gz", "truncated or corrupt image data")  # 3D
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")


class BundleError(ValueError):
    """A bundle that cannot be used for prediction (missing files or config ids, unknown name)."""


class UntrustedBundleError(BundleError):
    """A bundle folder from outside this collection, loaded without ``trust_bundle=True``.

    MONAI bundle configs run code by design (``$`` expressions, ``_target_`` imports), so loading a bundle is running
    its code; only the bundles shipped with this package are trusted without being asked.
    """


class CheckpointError(ValueError):
    """A checkpoint that is missing, is not a plain weights file (refused by ``weights_only=True``) or does not match
    the bundle's network."""


class ExperimentError(ValueError):
    """A table of experiments that cannot be run (``attnseg experiment``): a missing or malformed ``table.json`` or
    override file, an unknown row, an output folder made with other settings; the message names the file."""


class OutputConflictError(ValueError):
    """An output file exists that this output folder's manifest did not write; pass ``overwrite=True`` to replace it."""


def innermost_cause(exc: BaseException) -> BaseException:
    """The end of ``exc``'s ``__cause__`` chain: what MONAI's config parser (``RuntimeError``) and ITK wrap."""
    inner = exc
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    return inner


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """A one-line description of an exception: its innermost cause, type and first line (or ITK's description).

    MONAI and ITK wrap errors in long multi-line messages; the predictor reports this line per failed case.
    """
    inner = innermost_cause(exc)
    text = str(inner).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    described = [ln for ln in lines if ln.lower().startswith("description:")]
    line = described[0].split(":", 1)[1].strip() if described else (lines[0] if lines else type(inner).__name__)
    name = type(inner).__name__
    if name.islower():  # struct.error, zlib.error: name the module too
        name = f"{type(inner).__module__}.{name}"
    line = f"{name}: {line}" if not line.startswith(name) else line
    return line if len(line) <= limit else line[: limit - 3] + "..."
