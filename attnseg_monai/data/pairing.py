"""Pair image files with label files by file stem, tolerating the usual label suffixes (``_mask``, ``_label``...).

Every folder-based reader (generic image/mask folders, mitosis slides, Shenzhen chest X-rays) pairs its files here,
so the rules are the same everywhere:

* the pairing key of a label is its stem in lower case with one trailing label suffix removed
  (``case01_mask.png`` -> ``case01``); the separator before the suffix may be ``_``, ``-``, ``.`` or a space;
* a leading role word (:data:`ROLE_PREFIXES`, followed by a digit or a separator) is removed from a label's key, as
  in BTCV's ``label0001.nii.gz`` -> ``0001`` or ``mask_07.png`` -> ``07``;
* an image pairs with the label of the same key; failing that, one trailing image suffix is removed from the image
  stem (``case01_img.tif`` -> ``case01``), and failing that a leading role word (``img0001`` -> ``0001``);
* file endings do not matter (``a.tif`` pairs with ``a_mask.png``), but two images (or two labels) with the same
  key are ambiguous and reported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "MISSING_POLICIES",
    "ROLE_PREFIXES",
    "PairingResult",
    "check_missing_policy",
    "image_key_candidates",
    "label_key",
    "pair_by_stem",
    "pairing_key",
    "split_flat_folder",
    "strip_role_prefix",
]

logger = logging.getLogger(__name__)

#: Suffixes that mark a label file, longest first so ``_masks`` is removed whole.
LABEL_SUFFIXES: tuple[str, ...] = (
    "segmentation",
    "annotation",
    "labels",
    "label",
    "masks",
    "mask",
    "anno",
    "seg",
    "gt",
)
#: Suffixes an image file may carry that its label does not (``x_img.png`` + ``x_mask.png``).
IMAGE_SUFFIXES: tuple[str, ...] = ("image", "input", "img", "raw")
_SEPARATORS = ("_", "-", ".", " ")
#: Words that name a file's role rather than its case when they lead the name (BTCV's ``img0001`` / ``label0001``),
#: longest first. Removed only when a digit or a separator follows them and something remains.
ROLE_PREFIXES: tuple[str, ...] = ("images", "image", "img", "labels", "label", "masks", "mask", "seg")
_ROLE_WORDS = "|".join(ROLE_PREFIXES)
_ROLE_PREFIX = re.compile(rf"^(?:{_ROLE_WORDS})(?=[0-9_\-. ])[_\-. ]?")

#: What a reader does with an image that has no label (or a label without image).
MISSING_POLICIES: tuple[str, ...] = ("error", "skip")


def check_missing_policy(on_missing: str) -> str:
    """Return ``on_missing`` if it is one of :data:`MISSING_POLICIES`.

    Raises:
        ValueError: otherwise.
    """
    if on_missing not in MISSING_POLICIES:
        raise ValueError(f"on_missing must be one of {MISSING_POLICIES}, got {on_missing!r}.")
    return on_missing


def pairing_key(stem: str, suffixes: Sequence[str]) -> str:
    """Lower-case ``stem`` with one trailing ``<separator><suffix>`` removed, if it has one."""
    key = stem.lower()
    for suffix in suffixes:
        for sep in _SEPARATORS:
            ending = f"{sep}{suffix}"
            if key.endswith(ending) and len(key) > len(ending):
                return key[: -len(ending)]
    return key


def strip_role_prefix(key: str) -> str:
    """Lower-case ``key`` without a leading role word (:data:`ROLE_PREFIXES`): ``label0001`` -> ``0001``,
    ``img_3`` -> ``3``; ``image`` or ``imaging01`` stay as they are."""
    key = key.lower()
    return _ROLE_PREFIX.sub("", key, count=1) or key


def label_key(stem: str, suffixes: Sequence[str] = LABEL_SUFFIXES) -> str:
    """The pairing key of a label file's stem: one trailing label suffix and a leading role word removed."""
    return strip_role_prefix(pairing_key(stem, suffixes))


def image_key_candidates(stem: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[str]:
    """The keys an image (or a prediction named after it) is looked up by, in order: its stem in lower case, with one
    trailing image suffix removed, then with a leading role word removed as well."""
    keys: list[str] = []
    stripped = pairing_key(stem, suffixes)
    for key in (stem.lower(), stripped, strip_role_prefix(stripped)):
        if key not in keys:
            keys.append(key)
    return keys


def _stem(path: Path) -> str:
    # "a.ome.tif" -> "a.ome" is fine for pairing; only the last ending is dropped
    return path.stem


@dataclass
class PairingResult:
    """Outcome of :func:`pair_by_stem`: the pairs, plus what did not pair and what was ambiguous."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    unpaired_images: list[Path] = field(default_factory=list)
    unpaired_labels: list[Path] = field(default_factory=list)
    ambiguous: list[tuple[Path, str]] = field(default_factory=list)

    def items(self, image_key: str = "image", label_key: str = "label") -> list[dict[str, str]]:
        """The pairs as MONAI datalist items with absolute paths, sorted by image path."""
        return [
            {image_key: str(img.absolute()), label_key: str(lab.absolute())}
            for img, lab in sorted(self.pairs, key=lambda pair: str(pair[0]))
        ]

    def problems(self) -> list[tuple[str, str]]:
        """``(path, problem)`` for every unpaired or ambiguous file."""
        out: list[tuple[str, str]] = [(str(p), msg) for p, msg in self.ambiguous]
        out += [(str(p), "no label file found for this image") for p in self.unpaired_images]
        out += [(str(p), "no image file found for this label") for p in self.unpaired_labels]
        return out

    def resolve(self, on_missing: str, what: str) -> list[tuple[Path, Path]]:
        """Apply the missing-file policy and return the pairs.

        Ambiguous files are always an error; unpaired files are an error with ``on_missing="error"`` and are
        dropped with a logged warning with ``on_missing="skip"``.

        Raises:
            DatasetError: listing every offending file.
        """
        check_missing_policy(on_missing)
        problems = [(str(p), msg) for p, msg in self.ambiguous]
        unpaired = len(self.unpaired_images) + len(self.unpaired_labels)
        if on_missing == "error":
            problems = self.problems()
        elif unpaired:
            logger.warning(
                "%s: skipped %d image(s) without label and %d label(s) without image.",
                what,
                len(self.unpaired_images),
                len(self.unpaired_labels),
            )
        if problems:
            hint = " (pass on_missing='skip' to leave unpaired files out)" if unpaired and on_missing == "error" else ""
            DatasetError.raise_if_any(problems, what + hint)
        return sorted(self.pairs, key=lambda pair: str(pair[0]))


def _index(paths: Iterable[Path], keys: dict[Path, str], kind: str) -> tuple[dict[str, Path], list[tuple[Path, str]]]:
    table: dict[str, list[Path]] = {}
    for path in paths:
        table.setdefault(keys[path], []).append(path)
    unique: dict[str, Path] = {}
    ambiguous: list[tuple[Path, str]] = []
    for key, group in table.items():
        if len(group) == 1:
            unique[key] = group[0]
        else:
            names = ", ".join(sorted(p.name for p in group))
            for path in group:
                ambiguous.append(
                    (path, f"ambiguous {kind}: {len(group)} files share the pairing key {key!r} ({names})")
                )
    return unique, ambiguous


def pair_by_stem(
    images: Sequence[Path],
    labels: Sequence[Path],
    *,
    label_suffixes: Sequence[str] = LABEL_SUFFIXES,
    image_suffixes: Sequence[str] = IMAGE_SUFFIXES,
) -> PairingResult:
    """Pair ``images`` with ``labels`` by pairing key (see the module docstring).

    Args:
        images: image files.
        labels: label files.
        label_suffixes: suffixes stripped from label stems.
        image_suffixes: suffixes stripped from image stems when the plain stem finds no label.

    Returns:
        a :class:`PairingResult`; nothing is raised here, the caller applies its missing-file policy.
    """
    label_keys = {p: label_key(_stem(p), label_suffixes) for p in labels}
    by_label_key, ambiguous_labels = _index(labels, label_keys, "label")
    ambiguous_label_keys = {label_keys[p] for p, _ in ambiguous_labels}

    image_keys: dict[Path, str] = {}
    for path in images:
        candidates = image_key_candidates(_stem(path), image_suffixes)
        hits = [k for k in candidates if k in by_label_key or k in ambiguous_label_keys]
        image_keys[path] = hits[0] if hits else candidates[0]
    by_image_key, ambiguous_images = _index(images, image_keys, "image")

    result = PairingResult(ambiguous=ambiguous_images + ambiguous_labels)
    ambiguous_image_keys = {image_keys[p] for p, _ in ambiguous_images}
    for key, image in by_image_key.items():
        label = by_label_key.get(key)
        if label is not None:
            result.pairs.append((image, label))
        elif key not in ambiguous_label_keys:
            result.unpaired_images.append(image)
    paired_keys = set(by_image_key) | ambiguous_image_keys
    result.unpaired_labels = sorted(p for k, p in by_label_key.items() if k not in paired_keys)
    result.unpaired_images.sort()
    return result


def split_flat_folder(
    files: Sequence[Path], label_suffixes: Sequence[str] = LABEL_SUFFIXES
) -> tuple[list[Path], list[Path]]:
    """Split the files of one folder into images and labels: a label's stem ends with a label suffix."""
    images: list[Path] = []
    labels: list[Path] = []
    for path in files:
        stem = _stem(path)
        (labels if pairing_key(stem, label_suffixes) != stem.lower() else images).append(path)
    return images, labels
