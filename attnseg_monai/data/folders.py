"""Readers for image/label folder pairs: the generic layout, and mitosis slides (MCSA-UNet) which use it too.

Accepted trees (folder names are matched case-insensitively; files pair by stem, see
:mod:`attnseg_monai.data.pairing`)::

    root/                          root/                        root/
      images/  a.png b.tif           image/  s01.png              s01.png  s01_label.png
      masks/   a.png b_mask.png      label/  s01_label.png        s02.jpg  s02_mask.png

The left two are "two folders" layouts (image folder: images, image, imgs, img, inputs, input; label folder:
masks, mask, labels, label, gt, groundtruth, ground_truth, segmentations); the right one is a flat folder where
labels carry a label suffix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import ClassVar

from ..io.images import list_image_files, read_header
from .base import DatasetReader, register_reader
from .pairing import pair_by_stem, split_flat_folder

__all__ = ["IMAGE_DIR_NAMES", "LABEL_DIR_NAMES", "ImageMaskFolderReader", "MitosisReader"]

logger = logging.getLogger(__name__)

#: Image folder names, in order of preference.
IMAGE_DIR_NAMES: tuple[str, ...] = ("images", "image", "imgs", "img", "inputs", "input")
#: Label folder names, in order of preference.
LABEL_DIR_NAMES: tuple[str, ...] = (
    "masks",
    "mask",
    "labels",
    "label",
    "gt",
    "groundtruth",
    "ground_truth",
    "segmentations",
)


def _find_subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first subfolder of ``root`` whose lower-case name is in ``names`` (in ``names`` order)."""
    if not root.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    for name in names:
        if name in by_lower:
            return by_lower[name]
    return None


@register_reader
class ImageMaskFolderReader(DatasetReader):
    """Generic 2D layout: an image folder and a label folder, or one flat folder with suffixed labels.

    Args:
        image_dir: image folder relative to the root (default: the first of :data:`IMAGE_DIR_NAMES` present).
        label_dir: label folder relative to the root (default: the first of :data:`LABEL_DIR_NAMES` present).
        cache_dir: unused (nothing is derived); accepted for a uniform interface.
        on_missing: ``"error"`` (default) or ``"skip"`` for images without label and labels without image.

    Raises:
        ValueError: for an unknown ``on_missing``.

    Example::

        >>> items = ImageMaskFolderReader().read("/data/kumar")        # images/ + masks/ of H&E tiles
        >>> items = ImageMaskFolderReader(image_dir="he", label_dir="truth", on_missing="skip").read("/data/x")

    The formats read (PNG, JPEG, TIFF, BMP) are 2D; 3D volumes have their own readers (MONAI's NIfTI loading).
    """

    name: ClassVar[str] = "folders"
    description: ClassVar[str] = "images/ + masks/ (or labels/) folders, or one folder with <stem>_mask files"
    priority: ClassVar[int] = 0

    def __init__(
        self,
        *,
        image_dir: str | None = None,
        label_dir: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_missing: str | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir, on_missing=on_missing)
        self.image_dir = image_dir
        self.label_dir = label_dir

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        path = Path(root)
        image_dir = _find_subdir(path, IMAGE_DIR_NAMES)
        label_dir = _find_subdir(path, LABEL_DIR_NAMES)
        if image_dir is not None and label_dir is not None:
            return bool(list_image_files(image_dir)) and bool(list_image_files(label_dir))
        images, labels = split_flat_folder(list_image_files(path))
        return bool(images) and bool(labels)

    def _folders(self, root: Path) -> tuple[Path, Path] | None:
        """The (image, label) folders, or ``None`` for a flat folder."""
        image_dir = root / self.image_dir if self.image_dir else _find_subdir(root, IMAGE_DIR_NAMES)
        label_dir = root / self.label_dir if self.label_dir else _find_subdir(root, LABEL_DIR_NAMES)
        if self.image_dir or self.label_dir:
            for kind, folder, names in (("image", image_dir, IMAGE_DIR_NAMES), ("label", label_dir, LABEL_DIR_NAMES)):
                if folder is None or not folder.is_dir():
                    shown = str(folder) if folder is not None else f"any of {', '.join(names)}"
                    raise ValueError(f"{kind} folder {shown} not found under {str(root)!r}.")
        if image_dir is None or label_dir is None:
            return None
        return image_dir, label_dir

    def read(self, root: str | os.PathLike) -> list[dict[str, str]]:
        base = self._root(root)
        folders = self._folders(base)
        if folders is not None:
            images, labels = list_image_files(folders[0]), list_image_files(folders[1])
            where = f"{folders[0]} + {folders[1]}"
        else:
            images, labels = split_flat_folder(list_image_files(base))
            where = str(base)
        if not images and not labels:
            raise ValueError(
                f"no image files ({', '.join(('png', 'jpg', 'tif', 'bmp'))}) found in {where}: expected "
                f"images/ + masks/ (or labels/) folders, or one folder with <stem> and <stem>_mask files."
            )
        pairs = pair_by_stem(images, labels).resolve(self.on_missing, f"{self.name} data set {where}")
        return [{"image": str(i), "label": str(lab)} for i, lab in pairs]


@register_reader
class MitosisReader(ImageMaskFolderReader):
    """Mitosis slides (MCSA-UNet, seed 001): RGB slides (PNG/JPEG/TIFF) with binary label images of mitoses.

    The layout is the generic one of :class:`ImageMaskFolderReader`; this reader adds a check of the slide size
    (1720x1280 in the paper's data set): other sizes are accepted and logged, since sliding-window inference
    handles any size. It is chosen with ``layout="mitosis"``; auto-detection picks the generic reader, which gives
    the same datalist.

    Args:
        expected_size: ``(width, height)`` to compare against, or ``None`` to skip the check.
        image_dir, label_dir, cache_dir, on_missing: as for :class:`ImageMaskFolderReader`.

    Example::

        >>> items = MitosisReader().read("/data/mitosis")      # slides: images/ + labels/
        >>> items = MitosisReader(expected_size=None).read("/data/icpr2014_masks")   # any size, no size log

    2D only, as the slides are.
    """

    name: ClassVar[str] = "mitosis"
    description: ClassVar[str] = "mitosis slides (1720x1280 expected): image/label pairs as in 'folders'"
    auto_detect: ClassVar[bool] = False

    def __init__(
        self,
        *,
        expected_size: tuple[int, int] | None = (1720, 1280),
        image_dir: str | None = None,
        label_dir: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_missing: str | None = None,
    ) -> None:
        super().__init__(image_dir=image_dir, label_dir=label_dir, cache_dir=cache_dir, on_missing=on_missing)
        if expected_size is not None and (len(expected_size) != 2 or min(expected_size) < 1):
            raise ValueError(
                f"expected_size must be (width, height) with positive entries or None, got {expected_size}."
            )
        self.expected_size = None if expected_size is None else (int(expected_size[0]), int(expected_size[1]))

    def read(self, root: str | os.PathLike) -> list[dict[str, str]]:
        items = super().read(root)
        if self.expected_size is not None:
            other = 0
            for item in items:
                try:
                    other += read_header(item["image"]).size != self.expected_size
                except OSError:
                    continue  # reported by validate_pairs
            if other:
                w, h = self.expected_size
                logger.info(
                    "%d of %d slides are not %dx%d; sliding-window inference handles any size.", other, len(items), w, h
                )
        return items
