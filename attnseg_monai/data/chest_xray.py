"""Chest X-ray lung-field readers (focal/attention U-Net, seed 002): Montgomery County and Shenzhen sets.

Accepted trees::

    MontgomerySet/                         ChinaSet_AllFiles/  (or the "Lung Segmentation" Kaggle set)
      CXR_png/           MCUCXR_0001_0.png   CXR_png/  CHNCXR_0001_0.png   (or images/)
      ManualMask/                            mask/     CHNCXR_0001_0_mask.png   (or masks/)
        leftMask/        MCUCXR_0001_0.png
        rightMask/       MCUCXR_0001_0.png

Montgomery's left and right lung masks are merged (logical or) into one binary mask, written once as an 8-bit
0/255 PNG in the cache folder. Shenzhen masks are used as they are; masks were published for only part of the
Shenzhen images, so images without a mask are skipped (logged) unless ``on_missing="error"``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..io.atomic import atomic_write_bytes, sha256_bytes
from ..io.images import encode_png, list_image_files, read_pixels
from .base import DatasetReader, register_reader
from .cache import resolve_cache_dir
from .errors import DatasetError
from .pairing import pair_by_stem

__all__ = ["MontgomeryReader", "ShenzhenReader", "merge_lung_masks"]

logger = logging.getLogger(__name__)

_CXR_DIR_NAMES = ("cxr_png",)
_SHENZHEN_IMAGE_DIR_NAMES = ("cxr_png", "images", "image", "img")
_SHENZHEN_MASK_DIR_NAMES = ("mask", "masks")


def _subdir(root: Path, *names: str) -> Path | None:
    """The folder reached from ``root`` through ``names`` (lower case; folder names match case-insensitively)."""
    current = root
    for name in names:
        if not current.is_dir():
            return None
        match = next((p for p in sorted(current.iterdir()) if p.is_dir() and p.name.lower() == name), None)
        if match is None:
            return None
        current = match
    return current


def _first_subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        found = _subdir(root, name)
        if found is not None:
            return found
    return None


def merge_lung_masks(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Merge two lung masks (any non-zero value is lung) into one uint8 mask with values 0 and 255.

    Grey-with-alpha or RGB masks are reduced to their first channel.

    Raises:
        ValueError: if the two masks differ in height/width.
    """
    left2 = left[..., 0] if left.ndim == 3 else left
    right2 = right[..., 0] if right.ndim == 3 else right
    if left2.shape != right2.shape:
        raise ValueError(
            f"left and right masks differ in size: {left2.shape[1]}x{left2.shape[0]} vs "
            f"{right2.shape[1]}x{right2.shape[0]} (width x height)"
        )
    return np.where((left2 > 0) | (right2 > 0), 255, 0).astype(np.uint8)


@register_reader
class MontgomeryReader(DatasetReader):
    """Montgomery County chest X-ray set: ``CXR_png`` + ``ManualMask/{leftMask,rightMask}`` -> merged lung mask.

    Args:
        cache_dir: where merged masks go (default ``<root>/.attnseg_cache/montgomery``). Names are
            ``<stem>_<hash>.png``, the hash covering both source masks, so they are merged once.
        on_missing: ``"error"`` (default) or ``"skip"`` for images lacking a left or right mask.

    Raises:
        ValueError: for an unknown ``on_missing``.

    Example::

        >>> items = MontgomeryReader().read("/data/MontgomerySet")
        >>> items = MontgomeryReader(cache_dir="/scratch", on_missing="skip").read("/data/MontgomerySet")

    Radiographs are 2D; there is no 3D form of this layout.
    """

    name: ClassVar[str] = "montgomery"
    description: ClassVar[str] = "Montgomery: CXR_png/ + ManualMask/leftMask/ + ManualMask/rightMask/"
    priority: ClassVar[int] = 20

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        path = Path(root)
        return (
            _first_subdir(path, _CXR_DIR_NAMES) is not None
            and _subdir(path, "manualmask", "leftmask") is not None
            and _subdir(path, "manualmask", "rightmask") is not None
        )

    def read(self, root: str | os.PathLike) -> list[dict[str, str]]:
        base = self._root(root)
        images_dir = _first_subdir(base, _CXR_DIR_NAMES)
        left_dir = _subdir(base, "manualmask", "leftmask")
        right_dir = _subdir(base, "manualmask", "rightmask")
        if images_dir is None or left_dir is None or right_dir is None:
            raise ValueError(
                f"{str(base)!r} is not a Montgomery folder: expected CXR_png/, ManualMask/leftMask/ and "
                "ManualMask/rightMask/."
            )
        what = f"Montgomery data set {base}"
        images = list_image_files(images_dir)
        left = pair_by_stem(images, list_image_files(left_dir))
        right = pair_by_stem(images, list_image_files(right_dir))
        right_of = dict(right.pairs)
        ambiguous = [(str(p), m) for p, m in left.ambiguous + right.ambiguous]
        missing = [(str(p), "no left-lung mask in ManualMask/leftMask") for p in left.unpaired_images]
        missing += [(str(p), "no right-lung mask in ManualMask/rightMask") for p in right.unpaired_images]
        missing += [(str(p), "no image in CXR_png for this mask") for p in left.unpaired_labels + right.unpaired_labels]
        if ambiguous or self.on_missing == "error":
            hint = " (pass on_missing='skip' to leave incomplete cases out)" if missing else ""
            DatasetError.raise_if_any(ambiguous + (missing if self.on_missing == "error" else []), what + hint)
        if missing:
            logger.warning("%s: skipped %d incomplete case(s).", what, len(missing))
        cache = resolve_cache_dir(base, self.cache_dir, self.name)
        items: list[dict[str, str]] = []
        failed: list[tuple[str, str]] = []
        for image, left_mask in sorted(left.pairs):
            right_mask = right_of.get(image)
            if right_mask is None:
                continue
            try:
                merged = self._merge(left_mask, right_mask, cache)
            except (OSError, ValueError) as err:
                failed.append((str(left_mask), str(err)))
                continue
            items.append({"image": str(image), "label": str(merged)})
        DatasetError.raise_if_any(failed, what)
        return items

    @staticmethod
    def _merge(left: Path, right: Path, cache: Path) -> Path:
        key = sha256_bytes(left.read_bytes() + b"|" + right.read_bytes())[:12]
        target = cache / f"{left.stem}_{key}.png"
        if not target.is_file():
            try:
                left_px, right_px = read_pixels(left), read_pixels(right)
            except OSError as err:
                raise OSError(f"unreadable lung mask ({err})") from err
            atomic_write_bytes(target, encode_png(merge_lung_masks(left_px, right_px)))
        return target


@register_reader
class ShenzhenReader(DatasetReader):
    """Shenzhen chest X-ray set with the published lung masks: ``CXR_png``/``images`` + ``mask``/``masks``.

    Masks are named ``<image stem>_mask.png`` (plain ``<image stem>.png`` also pairs, as in the Kaggle
    "Lung Segmentation" folder that mixes Montgomery images in). Auto-detection requires a ``CXR_png`` folder or
    ``CHNCXR_*`` image names, so a generic ``images/`` + ``masks/`` data set is left to the generic reader.

    Args:
        cache_dir: unused (nothing is derived).
        on_missing: ``"skip"`` (default: masks exist for only part of the images) or ``"error"``.

    Raises:
        ValueError: for an unknown ``on_missing``.

    Example::

        >>> items = ShenzhenReader().read("/data/ChinaSet_AllFiles")
        >>> items = ShenzhenReader(on_missing="error").read("/data/lungs")  # demand a mask for every image

    Radiographs are 2D; there is no 3D form of this layout.
    """

    name: ClassVar[str] = "shenzhen"
    description: ClassVar[str] = "Shenzhen: CXR_png/ (or images/) + mask/ (or masks/) with <stem>_mask.png"
    priority: ClassVar[int] = 10
    default_on_missing: ClassVar[str] = "skip"

    @classmethod
    def _layout(cls, root: Path) -> tuple[Path, Path] | None:
        images = _first_subdir(root, _SHENZHEN_IMAGE_DIR_NAMES)
        masks = _first_subdir(root, _SHENZHEN_MASK_DIR_NAMES)
        if images is None or masks is None:
            return None
        return images, masks

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        path = Path(root)
        layout = cls._layout(path) if path.is_dir() else None
        if layout is None:
            return False
        images, masks = layout
        named = images.name.lower() == "cxr_png" or any(p.name.upper().startswith("CHNCXR_") for p in images.iterdir())
        return named and any(p.stem.lower().endswith("_mask") for p in list_image_files(masks))

    def read(self, root: str | os.PathLike) -> list[dict[str, str]]:
        base = self._root(root)
        layout = self._layout(base)
        if layout is None:
            raise ValueError(
                f"{str(base)!r} is not a Shenzhen folder: expected CXR_png/ (or images/) and mask/ (or masks/)."
            )
        images, masks = layout
        pairs = pair_by_stem(list_image_files(images), list_image_files(masks))
        resolved = pairs.resolve(self.on_missing, f"Shenzhen data set {base}")
        return [{"image": str(i), "label": str(m)} for i, m in resolved]
