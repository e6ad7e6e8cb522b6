"""The 3D CT data set layouts, read into MONAI datalists (``DatasetReader`` subclasses).

Data set layouts (registered with :func:`~attnseg_monai.data.base.register_reader`, so ``read_dataset(root,
layout=...)`` and auto-detection find them):

* ``msd`` (:class:`MSDReader`): a Medical Segmentation Decathlon task -- ``dataset.json`` with ``training``
  (``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}``) and ``test`` (``"./imagesTs/y.nii.gz"``)
  lists, paths relative to the task folder; any MSD task, and MONAI's decathlon-style datalists. Without a usable
  ``dataset.json`` (or one in nnU-Net's format, which has no file lists) ``imagesTr/`` and ``labelsTr/`` are paired
  by name (nnU-Net's ``_0000`` channel suffix is understood).
* ``btcv`` (:class:`BTCVReader`): the raw BTCV / Synapse "Abdomen" download, ``img/img0001.nii.gz`` with
  ``label/label0001.nii.gz`` (also under ``Training/`` or ``RawData/Training/``, or named ``imagesTr/labelsTr``);
  the test section reads ``Testing/img/`` or ``imagesTs/`` (images only).
* ``transunet`` (:class:`TransUNetSynapseReader`): TransUNet's preprocessed Synapse files,
  ``train_npz/caseXXXX_sliceYYY.npz`` and ``test_vol_h5/caseXXXX.npy.h5``, restricted to the cases listed in
  ``lists/lists_Synapse/train.txt`` / ``test_vol.txt`` when those exist.

Every reader returns absolute paths, sorted by image path. Volumes pair by case key: the file name without its
ending (``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``), in lower case, without a leading
``img``/``image``/``label``/``seg``/``mask`` token (``img0001`` and ``label0001`` share the key ``0001``) and without
a trailing label suffix (``_seg``, ``_label``...); an image whose key finds no label also tries its key without
nnU-Net's ``_0000`` channel suffix. Hidden files (``.name``, and the ``._name`` AppleDouble files found in the MSD
archives) are ignored.

TransUNet files hold the image and the label of a slice (or volume) in one file, so a datalist item points twice
at the same file; the MONAI image readers that take one array out of such a file are
:class:`~attnseg_monai.io.transunet.TransUNetNpzReader` and :class:`~attnseg_monai.io.transunet.TransUNetH5Reader`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..io.suffixes import VOLUME_EXTENSIONS, strip_volume_extension
from .base import DatasetReader, register_reader
from .errors import DatasetError
from .pairing import LABEL_SUFFIXES, PairingResult, label_key, strip_role_prefix

__all__ = [
    "BTCVReader",
    "MSDReader",
    "TransUNetSynapseReader",
    "is_volume_file",
    "pair_volumes",
    "volume_case_key",
]

logger = logging.getLogger(__name__)

_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")
_BTCV_IMAGE = re.compile(r"^img\d+", re.IGNORECASE)


def is_volume_file(path: Path) -> bool:
    """Whether ``path`` is a visible file with one of :data:`VOLUME_EXTENSIONS`."""
    name = path.name
    return not name.startswith(".") and name.lower().endswith(VOLUME_EXTENSIONS) and path.is_file()


def volume_case_key(name: str, role: str = "image") -> str:
    """The pairing key of a volume file name (see the module docstring); ``role`` is ``"image"`` or ``"label"``."""
    key = strip_volume_extension(name)
    return label_key(key, LABEL_SUFFIXES) if role == "label" else strip_role_prefix(key)


def _list_volumes(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_volume_file(p)), key=lambda p: p.name)


def pair_volumes(images: Sequence[Path], labels: Sequence[Path]) -> PairingResult:
    """Pair image volumes with label volumes by :func:`volume_case_key`.

    Returns:
        a :class:`~attnseg_monai.data.pairing.PairingResult` (apply the missing-file policy with its ``resolve``).
    """
    result = PairingResult()
    by_label: dict[str, list[Path]] = {}
    for path in labels:
        by_label.setdefault(volume_case_key(path.name, "label"), []).append(path)
    by_image: dict[str, list[Path]] = {}
    for path in images:
        key = volume_case_key(path.name, "image")
        if key not in by_label and _CHANNEL_SUFFIX.search(key):
            key = _CHANNEL_SUFFIX.sub("", key)
        by_image.setdefault(key, []).append(path)
    for kind, table in (("image", by_image), ("label", by_label)):
        for key, group in table.items():
            if len(group) > 1:
                names = ", ".join(sorted(p.name for p in group))
                result.ambiguous += [
                    (p, f"ambiguous {kind}: {len(group)} files share the case key {key!r} ({names})") for p in group
                ]
    for key, group in by_image.items():
        if len(group) != 1:
            continue
        match = by_label.get(key)
        if match is None:
            result.unpaired_images.append(group[0])
        elif len(match) == 1:
            result.pairs.append((group[0], match[0]))
    result.unpaired_labels = sorted(g[0] for k, g in by_label.items() if k not in by_image and len(g) == 1)
    result.unpaired_images.sort()
    return result


def _find_dir(root: Path, names: Sequence[str]) -> Path | None:
    """The first sub-folder of ``root`` whose lower-case name is in ``names`` (in ``names`` order)."""
    if not root.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    for name in names:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    return None


def _check_section(section: str, allowed: Sequence[str] | None = None) -> str:
    if not isinstance(section, str) or not section:
        raise ValueError(f"section must be a non-empty string such as 'training' or 'test', got {section!r}.")
    if allowed is not None and section not in allowed:
        raise ValueError(f"section must be one of {tuple(allowed)}, got {section!r}.")
    return section


def _apply_policy(problems: list[tuple[str, str]], on_missing: str, what: str) -> None:
    """Raise for ``problems`` with ``on_missing="error"``; otherwise log that the affected items were left out."""
    if problems and on_missing == "error":
        DatasetError.raise_if_any(problems, f"{what} (pass on_missing='skip' to leave these items out)")
    if problems:
        logger.warning("%s: skipped %d item(s) with missing files.", what, len(problems))


def _sorted(items: Iterable[dict[str, Any]], key: str = "image") -> list[dict[str, Any]]:
    def first(item: dict[str, Any]) -> str:
        value = item[key]
        return str(value[0] if isinstance(value, list) else value)

    return sorted(items, key=first)


@register_reader
class MSDReader(DatasetReader):
    """Medical Segmentation Decathlon task folder (e.g. ``Task07_Pancreas``): ``dataset.json`` + NIfTI folders.

    Paths in ``dataset.json`` are resolved against the task folder (``"./imagesTr/pancreas_001.nii.gz"``); an
    ``image`` given as a list (several files of one case) stays a list. Sections other than ``training`` and
    ``test`` (MONAI's ``validation`` lists, say) are read as they are. Without a ``dataset.json`` holding file lists
    (an nnU-Net raw folder, or none at all) the training section pairs ``imagesTr/`` with ``labelsTr/`` by case key
    and the test section lists ``imagesTs/``.

    Args:
        section: which list to read: ``"training"`` (default; items with ``image`` and ``label``), ``"test"``
            (items with ``image`` only, unless the list gives labels), or any other list of ``dataset.json``.
        datalist_name: the JSON file name (``dataset.json``; MONAI's BTCV datalist is ``dataset_0.json``).
        cache_dir: unused (nothing is derived); accepted for a uniform interface.
        on_missing: ``"error"`` (default) raises for listed files that do not exist (and, without a JSON, unpaired
            files); ``"skip"`` leaves those items out with a logged warning.

    Raises:
        ValueError: for an empty ``section`` or ``datalist_name`` or an unknown ``on_missing``.

    Example::

        >>> items = MSDReader().read("/data/Task07_Pancreas")                  # 3D CT volumes with labels
        >>> test = read_dataset("/data/Task07_Pancreas", layout="msd", section="test")   # images only
        >>> items = MSDReader().read("/data/Task05_Prostate")    # 4D multi-modal MRI: the same layout

    The layout is 3D (or 4D) NIfTI only; 2D data sets use the ``folders`` layout.
    """

    name: ClassVar[str] = "msd"
    description: ClassVar[str] = "Medical Segmentation Decathlon: dataset.json + imagesTr/ + labelsTr/ (+ imagesTs/)"
    priority: ClassVar[int] = 45

    def __init__(
        self,
        *,
        section: str = "training",
        datalist_name: str = "dataset.json",
        cache_dir: str | os.PathLike | None = None,
        on_missing: str | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir, on_missing=on_missing)
        self.section = _check_section(section)
        if not datalist_name:
            raise ValueError("datalist_name must name the JSON file of the task, e.g. 'dataset.json'.")
        self.datalist_name = datalist_name

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        path = Path(root)
        if (path / "dataset.json").is_file() and _find_dir(path, ("imagesTr", "imagesTs")) is not None:
            return True
        images = _find_dir(path, ("imagesTr",))
        return images is not None and _find_dir(path, ("labelsTr",)) is not None and bool(_list_volumes(images))

    def _load_json(self, root: Path) -> dict[str, Any] | None:
        path = root / self.datalist_name
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            problem = [(str(path), f"not valid JSON ({err})")]
            raise DatasetError("cannot read the data set description", problem) from err
        if not isinstance(data, dict):
            raise DatasetError("cannot read the data set description", [(str(path), "not a JSON object")])
        return data

    def read(self, root: str | os.PathLike) -> list[dict[str, Any]]:
        path = self._root(root)
        data = self._load_json(path)
        lists = {k for k, v in (data or {}).items() if isinstance(v, list) and k not in ("labels", "modality")}
        if data is not None and self.section in lists:
            return self._from_json(path, data[self.section])
        if data is not None and self.section in data:
            raise DatasetError(
                "cannot read the data set description",
                [(str(path / self.datalist_name), f"section {self.section!r} is not a list of files")],
            )
        if self.section not in ("training", "test"):
            shown = ", ".join(sorted(lists)) or "none"
            raise ValueError(f"{path / self.datalist_name} has no {self.section!r} list; lists found: {shown}.")
        return self._from_folders(path)

    def _resolve(self, root: Path, value: Any, where: str, problems: list[tuple[str, str]]) -> Any:
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return [self._resolve(root, v, where, problems) for v in value]
        if not isinstance(value, str) or not value:
            problems.append((where, f"entry is not a file path ({value!r})"))
            return None
        file = Path(value).expanduser()
        file = Path(os.path.normpath(file if file.is_absolute() else root / file))
        if not file.is_file():
            problems.append((str(file), f"listed in {self.datalist_name} ({where}) but not found"))
        return str(file)

    def _from_json(self, root: Path, entries: list[Any]) -> list[dict[str, Any]]:
        json_path = str(root / self.datalist_name)
        items: list[dict[str, Any]] = []
        problems: list[tuple[str, str]] = []
        for index, entry in enumerate(entries):
            where = f"{self.section}[{index}]"
            found: list[tuple[str, str]] = []
            if isinstance(entry, str):
                entry = {"image": entry}
            if not isinstance(entry, dict) or "image" not in entry:
                problems.append((json_path, f"{where} has no 'image' entry"))
                continue
            item = {k: v for k, v in entry.items() if k not in ("image", "label")}
            item["image"] = self._resolve(root, entry["image"], where, found)
            if "label" in entry:
                item["label"] = self._resolve(root, entry["label"], where, found)
            elif self.section == "training":
                found.append((json_path, f"{where} has no 'label' entry"))
            problems += found
            if not found:
                items.append(item)
        images = [json.dumps(i["image"]) for i in items]
        dupes = sorted({i for i in images if images.count(i) > 1})
        if dupes:
            DatasetError.raise_if_any([(json_path, f"image listed twice: {d}") for d in dupes], "the data set list")
        _apply_policy(problems, self.on_missing, f"{self.section} section of {json_path}")
        return _sorted(items)

    def _from_folders(self, root: Path) -> list[dict[str, Any]]:
        if self.section == "training":
            images, labels = _find_dir(root, ("imagesTr",)), _find_dir(root, ("labelsTr",))
            if images is None or labels is None:
                raise ValueError(
                    f"{root} has neither a {self.datalist_name} with a 'training' list nor imagesTr/ + labelsTr/ "
                    "folders: pass the task folder (e.g. Task07_Pancreas)."
                )
            result = pair_volumes(_list_volumes(images), _list_volumes(labels))
            pairs = result.resolve(self.on_missing, f"MSD folder {root}")
            return _sorted([{"image": str(i.absolute()), "label": str(lab.absolute())} for i, lab in pairs])
        folder = _find_dir(root, ("imagesTs",))
        if folder is None:
            raise ValueError(f"{root} has no imagesTs/ folder and no {self.datalist_name} with a 'test' list.")
        return [{"image": str(p.absolute())} for p in _list_volumes(folder)]


@register_reader
class BTCVReader(DatasetReader):
    """Raw BTCV (Synapse multi-organ "Abdomen") CT: ``img/img0001.nii.gz`` + ``label/label0001.nii.gz``.

    Labels keep the 13 BTCV organ ids; map them to the 8 Synapse organs of the TransUNet protocol with
    :func:`~attnseg_monai.data.ct_labels.btcv_to_synapse8` (or the ``BTCVToSynapse8d`` transform).

    Args:
        section: ``"training"`` (default: image/label pairs) or ``"test"`` (``Testing/img`` or ``imagesTs``:
            images only).
        cache_dir: unused (nothing is derived); accepted for a uniform interface.
        on_missing: ``"error"`` (default) or ``"skip"`` for images without label and labels without image.

    Raises:
        ValueError: for an unknown ``section`` or ``on_missing``.

    Example::

        >>> items = BTCVReader().read("/data/Abdomen/RawData")      # finds Training/img + Training/label (3D)
        >>> test = read_dataset("/data/Abdomen/RawData", layout="btcv", section="test")
        >>> items = read_dataset("/data/btcv_slices", layout="folders")  # 2D slices exported as PNG: another layout
    """

    name: ClassVar[str] = "btcv"
    description: ClassVar[str] = "raw BTCV/Synapse: img/img0001.nii.gz + label/label0001.nii.gz (or Training/...)"
    priority: ClassVar[int] = 40

    _IMAGE_DIRS: ClassVar[tuple[str, ...]] = ("img", "images", "imagesTr")
    _LABEL_DIRS: ClassVar[tuple[str, ...]] = ("label", "labels", "labelsTr")
    _TRAIN_BASES: ClassVar[tuple[tuple[str, ...], ...]] = (
        (),
        ("Training",),
        ("RawData", "Training"),
        ("Abdomen", "RawData", "Training"),
    )
    _TEST_BASES: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("Testing",),
        ("RawData", "Testing"),
        ("Abdomen", "RawData", "Testing"),
    )

    def __init__(
        self,
        *,
        section: str = "training",
        cache_dir: str | os.PathLike | None = None,
        on_missing: str | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir, on_missing=on_missing)
        self.section = _check_section(section, ("training", "test"))

    @staticmethod
    def _descend(root: Path, parts: Sequence[str]) -> Path | None:
        path: Path | None = root
        for part in parts:
            path = _find_dir(path, (part,)) if path is not None else None
        return path

    @classmethod
    def _training_dirs(cls, root: Path) -> tuple[Path, Path] | None:
        for parts in cls._TRAIN_BASES:
            base = cls._descend(root, parts)
            if base is None:
                continue
            images, labels = _find_dir(base, cls._IMAGE_DIRS), _find_dir(base, cls._LABEL_DIRS)
            if images is None or labels is None:
                continue
            if any(_BTCV_IMAGE.match(p.name) for p in _list_volumes(images)):
                return images, labels
        return None

    @classmethod
    def _test_dir(cls, root: Path) -> Path | None:
        for parts in cls._TEST_BASES:
            base = cls._descend(root, parts)
            if base is not None:
                images = _find_dir(base, cls._IMAGE_DIRS)
                if images is not None:
                    return images
        return _find_dir(root, ("imagesTs",))

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        return cls._training_dirs(Path(root)) is not None

    def read(self, root: str | os.PathLike) -> list[dict[str, Any]]:
        path = self._root(root)
        if self.section == "test":
            folder = self._test_dir(path)
            if folder is None:
                raise ValueError(f"{path} has no Testing/img/ (or imagesTs/) folder of BTCV test images.")
            return [{"image": str(p.absolute())} for p in _list_volumes(folder)]
        dirs = self._training_dirs(path)
        if dirs is None:
            raise ValueError(
                f"{path} holds no BTCV training data: expected img/img0001.nii.gz + label/label0001.nii.gz "
                "(directly, or under Training/ or RawData/Training/)."
            )
        result = pair_volumes(_list_volumes(dirs[0]), _list_volumes(dirs[1]))
        pairs = result.resolve(self.on_missing, f"BTCV folder {dirs[0].parent}")
        return _sorted([{"image": str(i.absolute()), "label": str(lab.absolute())} for i, lab in pairs])


@register_reader
class TransUNetSynapseReader(DatasetReader):
    """TransUNet's preprocessed Synapse data: ``train_npz/*.npz`` slices and ``test_vol_h5/*.npy.h5`` volumes.

    Each item points at one file twice (``{"image": f, "label": f}``); load it with
    :class:`~attnseg_monai.io.transunet.TransUNetNpzReader` / :class:`~attnseg_monai.io.transunet.TransUNetH5Reader`
    and ``key="image"`` / ``key="label"``. Images are already clipped to [-125, 275] HU and scaled to [0, 1]; labels
    are the 8 Synapse classes 0..8.

    Args:
        section: ``"training"`` (default; ``train_npz``, list ``train.txt``) or ``"test"`` (``test_vol_h5``, list
            ``test_vol.txt``).
        list_dir: folder of ``train.txt`` / ``test_vol.txt``; by default ``lists/lists_Synapse``,
            ``lists_Synapse``, ``lists`` or the root itself, whichever holds the file. Without a list every file of
            the folder is read.
        cache_dir: unused (nothing is derived); accepted for a uniform interface.
        on_missing: ``"error"`` (default) or ``"skip"`` for listed cases without a file.

    Raises:
        ValueError: for an unknown ``section`` or ``on_missing``.

    Example::

        >>> slices = TransUNetSynapseReader().read("/data/Synapse")                    # 2D training slices
        >>> volumes = read_dataset("/data/Synapse", layout="transunet", section="test")   # 3D test volumes
    """

    name: ClassVar[str] = "transunet"
    description: ClassVar[str] = "TransUNet Synapse: train_npz/*.npz + test_vol_h5/*.npy.h5 (+ lists/lists_Synapse)"
    priority: ClassVar[int] = 50

    _SECTIONS: ClassVar[dict[str, tuple[str, tuple[str, ...], str]]] = {
        "training": ("train_npz", (".npz",), "train.txt"),
        "test": ("test_vol_h5", (".npy.h5", ".h5"), "test_vol.txt"),
    }

    def __init__(
        self,
        *,
        section: str = "training",
        list_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_missing: str | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir, on_missing=on_missing)
        self.section = _check_section(section, tuple(self._SECTIONS))
        self.list_dir = None if list_dir is None else Path(list_dir).expanduser()

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        return _find_dir(Path(root), ("train_npz", "test_vol_h5")) is not None

    def _list_file(self, root: Path, name: str) -> Path | None:
        if self.list_dir is not None:
            candidate = self.list_dir / name
            if not candidate.is_file():
                raise ValueError(f"list file {candidate} not found (list_dir={str(self.list_dir)!r}).")
            return candidate
        for parts in (("lists", "lists_Synapse"), ("lists_Synapse",), ("lists",), ()):
            folder = BTCVReader._descend(root, parts)
            if folder is not None and (folder / name).is_file():
                return folder / name
        return None

    def read(self, root: str | os.PathLike) -> list[dict[str, Any]]:
        path = self._root(root)
        folder_name, endings, list_name = self._SECTIONS[self.section]
        folder = _find_dir(path, (folder_name,))
        if folder is None:
            raise ValueError(
                f"{path} has no {folder_name}/ folder: pass the folder holding train_npz/ and test_vol_h5/."
            )
        files = {
            p.name.lower(): p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(endings)
        }
        list_file = self._list_file(path, list_name)
        if list_file is None:
            chosen = sorted(files.values())
            logger.info("%s: no %s found; reading all %d files of %s.", path, list_name, len(chosen), folder)
        else:
            names = [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            chosen, problems = [], []
            for name in names:
                match = next((files[f"{name.lower()}{e}"] for e in endings if f"{name.lower()}{e}" in files), None)
                if match is None:
                    problems.append((str(folder / f"{name}{endings[0]}"), f"listed in {list_file} but not found"))
                else:
                    chosen.append(match)
            _apply_policy(problems, self.on_missing, f"{self.section} list {list_file}")
            if len(chosen) < len(files):
                logger.info(
                    "%s: %d of %d files are not in %s and were left out.",
                    folder,
                    len(files) - len(chosen),
                    len(files),
                    list_file.name,
                )
        return _sorted([{"image": str(p.absolute()), "label": str(p.absolute())} for p in dict.fromkeys(chosen)])
