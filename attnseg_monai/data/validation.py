"""Check image/label pairs before training, and report every problem at once.

Checks, per item: both paths given and present, files not empty, files readable (header, and pixels for labels),
image channel count (e.g. RGBA or grey where RGB is expected), single-channel labels, image and label of the same
width and height, labels not all background, and label values within an allowed set. Headers are read without
decoding pixels (PIL); labels are decoded only when their values are checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..io.images import ImageHeader, read_header, read_pixels
from .errors import DatasetError, read_checked

__all__ = ["PairInfo", "label_value_problems", "validate_pairs"]

_CHANNEL_HINT = {
    (4, 3): "drop the alpha channel (convert to RGB)",
    (1, 3): "a grey image where RGB is expected: convert to RGB or build the network with in_channels=1",
    (3, 1): "an RGB image where grey is expected: convert to grey (mode L) or use in_channels=3",
    (4, 1): "an RGBA image where grey is expected: convert to grey (mode L)",
    (2, 1): "drop the alpha channel (convert to mode L)",
    (2, 3): "a grey+alpha image where RGB is expected: convert to RGB",
}


@dataclass(frozen=True)
class PairInfo:
    """What :func:`validate_pairs` learned about one valid pair."""

    image: str
    label: str
    size: tuple[int, int]
    """(width, height) in pixels."""
    channels: int
    label_values: tuple[int, ...] | None
    """sorted label values, when labels were decoded."""


def _header(path: str, role: str, problems: list[tuple[str, str]]) -> ImageHeader | None:
    return read_checked(path, role, problems, read_header)


def _verify(path: str, role: str, problems: list[tuple[str, str]]) -> bool:
    """Decode-free integrity check (PNG chunk CRCs and the like) of a file whose header read fine."""
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception as err:  # noqa: BLE001 - PIL raises various types for corrupt data
        problems.append((path, f"{role} file is corrupt ({type(err).__name__}: {err})"))
        return False


def label_value_problems(
    label_path: str, values: tuple[int, ...], allowed: set[int] | None, allow_empty: bool, kind: str = "images"
) -> list[tuple[str, str]]:
    """The problems of a label's values (the 2D and the volume checks share them): background only (unless
    ``allow_empty``), and values outside ``allowed``."""
    found = []
    if not allow_empty and not any(values):
        found.append(
            (
                label_path,
                f"label is empty (background only); pass allow_empty_labels=True if {kind} without foreground are "
                "intended",
            )
        )
    unexpected = sorted(set(values) - allowed) if allowed is not None else []
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:10]) + (" ..." if len(unexpected) > 10 else "")
        found.append((label_path, f"unexpected label values [{shown}] (allowed: {sorted(allowed)})"))
    return found


def validate_pairs(
    items: Iterable[Mapping[str, Any]],
    expected_channels: int | None = None,
    label_values: Iterable[int] | None = None,
    *,
    allow_empty_labels: bool = False,
    check_labels: bool = True,
    decode_images: bool = False,
    image_key: str = "image",
    label_key: str = "label",
) -> list[PairInfo]:
    """Check every image/label pair; raise one :class:`DatasetError` listing each offending file and problem.

    Args:
        items: datalist items with ``image_key`` and ``label_key`` paths.
        expected_channels: channels every image must have (3 for RGB, 1 for grey); ``None`` skips the check.
        label_values: the allowed label values (e.g. ``{0, 255}`` or ``{0, 1}``); ``None`` allows any value.
            Instance masks are checked with ``None`` (ids are arbitrary).
        allow_empty_labels: accept labels that are all background (0); slides without mitoses, say.
        check_labels: decode labels to check emptiness, values and integrity; ``False`` reads headers only.
        decode_images: also decode every image in full (slow; catches truncated JPEG/TIFF data that a header
            read and PIL's ``verify`` do not).
        image_key: key of the image path.
        label_key: key of the label path.

    Returns:
        one :class:`PairInfo` per item, in the input order, when all pass.

    Raises:
        ValueError: for a bad ``expected_channels``.
        DatasetError: listing every problem found (nothing is raised before all items are checked).
    """
    if expected_channels is not None and expected_channels not in (1, 2, 3, 4):
        raise ValueError(f"expected_channels must be 1, 2, 3, 4 or None, got {expected_channels}.")
    allowed = None if label_values is None else {int(v) for v in label_values}
    items = list(items)
    problems: list[tuple[str, str]] = []
    infos: list[PairInfo] = []
    if not items:
        raise DatasetError("no image/label pairs to validate: the datalist is empty")
    for index, item in enumerate(items):
        image_path, label_path = item.get(image_key), item.get(label_key)
        if not image_path:
            problems.append((str(label_path or f"item {index}"), f"missing image (no {image_key!r} entry)"))
        if not label_path:
            problems.append((str(image_path or f"item {index}"), f"missing label (no {label_key!r} entry)"))
        if not image_path or not label_path:
            continue
        image_path, label_path = str(image_path), str(label_path)
        found: list[tuple[str, str]] = []
        image = _header(image_path, "image", found)
        label = _header(label_path, "label", found)
        intact = image is not None and (image.format != "PNG" or _verify(image_path, "image", found))
        if intact and decode_images:
            try:
                read_pixels(image_path)
            except OSError as err:
                found.append((image_path, f"image file is corrupt ({err})"))
        if image is not None and expected_channels is not None and image.channels != expected_channels:
            hint = _CHANNEL_HINT.get((image.channels, expected_channels), "convert the image")
            found.append(
                (
                    image_path,
                    f"image has {image.channels} channel(s) (mode {image.mode}), expected {expected_channels}: {hint}",
                )
            )
        if label is not None and label.channels != 1:
            found.append(
                (
                    label_path,
                    f"label has {label.channels} channels (mode {label.mode}), expected a single-channel mask "
                    "(convert it to grey, mode L or I;16)",
                )
            )
        if image is not None and label is not None and image.size != label.size:
            found.append(
                (
                    label_path,
                    f"label is {label.width}x{label.height} but its image {Path(image_path).name} is "
                    f"{image.width}x{image.height} (width x height)",
                )
            )
        values: tuple[int, ...] | None = None
        if label is not None and check_labels:
            try:
                pixels = read_pixels(label_path)
            except OSError as err:
                found.append((label_path, f"label file is corrupt ({err})"))
                pixels = None
            if pixels is not None:
                present = np.unique(pixels[..., 0] if pixels.ndim == 3 else pixels)
                values = tuple(int(v) for v in present)
                found += label_value_problems(label_path, values, allowed, allow_empty_labels, "images")
        if found or image is None:
            problems += found
        else:
            infos.append(PairInfo(image_path, label_path, image.size, image.channels, values))
    DatasetError.raise_if_any(problems, f"{len(items)} image/label pairs")
    return infos
