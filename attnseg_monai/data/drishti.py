"""Drishti-GS1 (optic disc and cup in fundus photographs; seed 004's own experiment) as MONAI datalists.

The layout as distributed (101 images: 50 ``Training``, 51 ``Test``; test ground truth released as ``Test_GT``)::

    Drishti-GS1_files/
      Training/
        Images/drishtiGS_002.png ...                              RGB fundus photographs (2896 x 1944)
        GT/drishtiGS_002/
          SoftMap/drishtiGS_002_ODsegSoftmap.png                  optic disc, 8-bit grey soft map
          SoftMap/drishtiGS_002_cupsegSoftmap.png                 optic cup
          AvgBoundary/...txt, drishtiGS_002_cdrValues.txt          (not read)
      Test/
        Images/drishtiGS_001.png ...
        Test_GT/drishtiGS_001/SoftMap/...                         (``GT/`` is accepted too)

A soft map holds, per pixel, the share of the annotators who marked it (0 = nobody, 255 = all of them). **Reading
taken**: a pixel belongs to a structure when at least ``agreement`` of the annotators marked it, i.e. its soft value
is ``>= agreement * 255`` (the full scale of the file's integer type); ``agreement=0.5`` (default: at least half of
them, the majority reading most works use) is the switch (``1.0``: all annotators; ``1/255``: any annotator).

**Labels** (nested regions, as the structures are nested): 0 background, 1 optic disc outside the cup (the
neuroretinal rim), 2 cup. The disc is therefore the union of labels 1 and 2, and the two Dice scores the seed reports
are region scores: disc Dice over ``{1, 2}``, cup Dice over ``{2}`` (:data:`DRISHTI_REGIONS`). A cup pixel outside
the disc (annotators' marks can disagree) is kept as cup, so the disc region contains the whole cup. The label maps
are written once into a cache folder (``<root>/.attnseg_cache/drishti_gs`` by default), named after the image and a
hash of both soft maps and the agreement.

The split is the data set's own: ``Training`` is the training set (dealt into folds for ``fold=k``), ``Test`` the
validation set, as in the seed (50 training and 51 validation images). The embedded default is
:func:`make_drishti_sample`: generated fundus-like images (:mod:`~attnseg_monai.data.synth_fundus`) written in this
very layout, so every run of the bundle goes through the reader.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..io.atomic import atomic_write_bytes, sha256_bytes
from ..io.images import encode_png, is_image_file, list_image_files, read_header, read_pixels
from .base import DatasetReader, register_reader
from .cache import resolve_cache_dir
from .datalist import make_datalist, select_fold, write_datalist
from .errors import DatasetError
from .samples import _check_count, _materialise, _Plan, _png_plan
from .synth_fundus import render_fundus
from .validation import validate_pairs

__all__ = [
    "DRISHTI_CLASSES",
    "DRISHTI_REGIONS",
    "DrishtiGSReader",
    "drishti_inference_items",
    "make_drishti_sample",
    "prepare_drishti_datalist",
    "softmaps_to_label",
]

logger = logging.getLogger(__name__)

#: label values of the converted maps
DRISHTI_CLASSES: dict[int, str] = {0: "background", 1: "rim", 2: "cup"}
#: the structures scored, as unions of label values: the disc contains the cup
DRISHTI_REGIONS: dict[str, tuple[int, ...]] = {"disc": (1, 2), "cup": (2,)}
_FOLDER = "Drishti-GS1_files"
_SECTIONS = {"training": ("Training", ("GT",)), "test": ("Test", ("Test_GT", "GT"))}
_SUFFIX = {"disc": "_ODsegSoftmap", "cup": "_cupsegSoftmap"}


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name`` (case-insensitive), or ``None``."""
    if not folder.is_dir():
        return None
    exact = folder / name
    if exact.is_dir():
        return exact
    return next((p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() == name.lower()), None)


def _base(root: Path) -> Path | None:
    """The folder holding ``Training/`` and/or ``Test/``: ``root`` itself or its ``Drishti-GS1_files`` (also nested
    twice, as the archive unpacks)."""
    candidates = [root]
    inner = _child(root, _FOLDER)
    if inner is not None:
        candidates += [inner, *([twice] if (twice := _child(inner, _FOLDER)) is not None else [])]
    for folder in candidates:
        for section, _ in _SECTIONS.values():
            sec = _child(folder, section)
            if sec is not None and _child(sec, "Images") is not None:
                return folder
    return None


def _marked(soft: np.ndarray, agreement: float, name: str) -> np.ndarray:
    """Pixels of a soft map that at least ``agreement`` of the annotators marked (first channel of a colour map)."""
    if not 0.0 < float(agreement) <= 1.0:
        raise ValueError(f"agreement must be a share of annotators in (0, 1], got {agreement}.")
    arr = np.asarray(soft)
    arr = arr[..., 0] if arr.ndim == 3 else arr
    if arr.ndim != 2 or arr.dtype.kind not in "ub":
        raise ValueError(f"the {name} soft map must be a 2D unsigned integer image, got {arr.dtype} {arr.shape}.")
    full = 1 if arr.dtype.kind == "b" else np.iinfo(arr.dtype).max
    return arr.astype(np.float64) >= float(agreement) * full - 1e-9


def softmaps_to_label(disc: np.ndarray, cup: np.ndarray, agreement: float = 0.5) -> np.ndarray:
    """The label map of one image from its disc and cup soft maps (see the module docstring).

    Args:
        disc: the optic-disc soft map, (H, W) or (H, W, C) (the first channel is read), unsigned integers.
        cup: the cup soft map, the same size.
        agreement: the share of annotators in (0, 1] a pixel needs.

    Returns:
        uint8 (H, W): 0 background, 1 disc outside the cup, 2 cup.

    Raises:
        ValueError: for an ``agreement`` outside (0, 1], maps that are not unsigned integers, or maps that differ in
            size.
    """
    maps = [_marked(disc, agreement, "disc"), _marked(cup, agreement, "cup")]
    if maps[0].shape != maps[1].shape:
        raise ValueError(f"the disc and cup soft maps differ in size: {maps[0].shape} and {maps[1].shape} (H, W).")
    label = np.zeros(maps[0].shape, dtype=np.uint8)
    label[maps[0]] = 1
    label[maps[1]] = 2
    return label


@register_reader
class DrishtiGSReader(DatasetReader):
    """Drishti-GS1: ``Training/`` and ``Test/`` with ``Images/`` and per-image soft maps -> 0/1/2 label maps.

    Args:
        section: ``"training"``, ``"test"`` or ``"all"`` (both; each item then says its ``"section"``).
        agreement: share of annotators a pixel needs to belong to the disc or the cup (default 0.5).
        cache_dir: where the label maps go (default ``<root>/.attnseg_cache/drishti_gs``).
        on_missing: ``"error"`` (default) lists every image without both soft maps (and soft maps without an image);
            ``"skip"`` leaves them out with a logged warning (e.g. a copy of the original release, which had no test
            ground truth).

    Raises:
        ValueError: for an unknown ``section``, an ``agreement`` outside (0, 1] or an unknown ``on_missing``.

    Example::

        >>> items = DrishtiGSReader(section="training").read("/data/Drishti-GS1_files")
        >>> items = read_dataset("/data/drishti", layout="drishti_gs", agreement=1.0)   # every annotator agrees

    The photographs are 2D; there is no 3D form of this layout.
    """

    name: ClassVar[str] = "drishti_gs"
    description: ClassVar[str] = (
        "Drishti-GS1: Training/ and Test/ with Images/ and GT/ (Test_GT/) <stem>/SoftMap/<stem>_ODsegSoftmap.png, "
        "_cupsegSoftmap.png"
    )
    priority: ClassVar[int] = 30

    def __init__(
        self,
        *,
        section: str = "all",
        agreement: float = 0.5,
        cache_dir: str | os.PathLike | None = None,
        on_missing: str | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir, on_missing=on_missing)
        if section not in (*_SECTIONS, "all"):
            raise ValueError(f"section must be 'training', 'test' or 'all', got {section!r}.")
        if not 0.0 < float(agreement) <= 1.0:
            raise ValueError(f"agreement must be a share of annotators in (0, 1], got {agreement}.")
        self.section = section
        self.agreement = float(agreement)

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        path = Path(root)
        base = _base(path) if path.is_dir() else None
        if base is None:
            return False
        if base.name.lower() == _FOLDER.lower():
            return True
        for section, gt_names in _SECTIONS.values():
            sec = _child(base, section)
            if sec is not None and any(_child(sec, g) is not None for g in gt_names):
                return True
        return False

    def read(self, root: str | os.PathLike) -> list[dict[str, str]]:
        given = self._root(root)
        base = _base(given)
        if base is None:
            raise ValueError(
                f"{str(given)!r} is not a Drishti-GS1 folder: expected Training/Images/ or Test/Images/ (in it or in "
                f"its {_FOLDER}/)."
            )
        cache = resolve_cache_dir(base, self.cache_dir, self.name)
        sections = list(_SECTIONS) if self.section == "all" else [self.section]
        items: list[dict[str, str]] = []
        problems: list[tuple[str, str]] = []
        skipped = 0
        for section in sections:
            found, missing, broken = self._read_section(base, section, cache)
            items += found
            problems += broken
            if self.on_missing == "error":
                problems += missing
            else:
                skipped += len(missing)
        hint = " (pass on_missing='skip' to leave out images without ground truth)" if problems else ""
        DatasetError.raise_if_any(problems, f"Drishti-GS1 data set {base}{hint}")
        if skipped:
            logger.warning("Drishti-GS1 data set %s: skipped %d image(s) without both soft maps.", base, skipped)
        return items

    def _read_section(
        self, base: Path, section: str, cache: Path
    ) -> tuple[list[dict[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        """(items, missing ground truth, other problems) of one section."""
        folder_name, gt_names = _SECTIONS[section]
        sec = _child(base, folder_name)
        images_dir = _child(sec, "Images") if sec is not None else None
        if images_dir is None:
            return [], [], []
        images = list_image_files(images_dir)
        gt_dir = next((g for n in gt_names if (g := _child(sec, n)) is not None), None)
        expected_gt = sec / gt_names[0]
        items: list[dict[str, str]] = []
        missing: list[tuple[str, str]] = []
        broken: list[tuple[str, str]] = []
        for image in images:
            stem = image.stem
            case_dir = _child(gt_dir, stem) if gt_dir is not None else None
            soft_dir = _child(case_dir, "SoftMap") if case_dir is not None else None
            maps = {}
            for kind, suffix in _SUFFIX.items():
                path = _soft_map_file(soft_dir, stem + suffix)
                if path is None:
                    where = (soft_dir or expected_gt / stem / "SoftMap") / f"{stem}{suffix}.png"
                    missing.append((str(where), f"missing {kind} soft map for image {image.name}"))
                else:
                    maps[kind] = path
            if len(maps) < 2:
                continue
            try:
                label = self._label(image, maps["disc"], maps["cup"], cache)
            except _Problem as problem:
                broken.append((str(problem.path), problem.message))
                continue
            items.append({"image": str(image), "label": str(label), "section": section})
        if gt_dir is not None:
            known = {p.stem.lower() for p in images}
            for case in sorted(p for p in gt_dir.iterdir() if p.is_dir()):
                if case.name.lower() not in known:
                    missing.append((str(case), f"ground truth without an image in {images_dir}"))
        return items, missing, broken

    def _label(self, image: Path, disc: Path, cup: Path, cache: Path) -> Path:
        try:
            size = read_header(image).size
        except OSError as err:
            raise _Problem(image, f"image file is unreadable or corrupt ({err})") from err
        data: dict[str, bytes] = {}
        for kind, path in (("disc", disc), ("cup", cup)):
            try:
                data[kind] = path.read_bytes()
                soft_size = read_header(path).size
            except OSError as err:
                raise _Problem(path, f"{kind} soft map is unreadable or corrupt ({err})") from err
            if soft_size != size:
                raise _Problem(
                    path,
                    f"{kind} soft map is {soft_size[0]}x{soft_size[1]}, its image {image.name} is {size[0]}x{size[1]} "
                    "(width x height)",
                )
        key = sha256_bytes(data["disc"] + b"|" + data["cup"] + f"|{self.agreement!r}".encode())[:12]
        target = cache / f"{image.stem}_{key}.png"
        if target.is_file():
            return target
        try:
            disc_map = read_pixels(disc)
            label = softmaps_to_label(disc_map, read_pixels(cup), self.agreement)
        except (OSError, ValueError) as err:
            raise _Problem(disc, f"cannot convert the soft maps ({err})") from err
        if not _marked(disc_map, self.agreement, "disc").any():
            raise _Problem(disc, f"no optic disc: no pixel reaches the agreement {self.agreement:g}")
        atomic_write_bytes(target, encode_png(label))
        return target


class _Problem(Exception):
    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def _soft_map_file(folder: Path | None, stem: str) -> Path | None:
    """``<folder>/<stem>.png`` (the file name matched case-insensitively), or ``None``."""
    if folder is None or not folder.is_dir():
        return None
    exact = folder / f"{stem}.png"
    if exact.is_file():
        return exact
    return next((p for p in sorted(folder.iterdir()) if p.is_file() and p.name.lower() == f"{stem}.png".lower()), None)


def make_drishti_sample(
    out_dir: str | os.PathLike,
    num_train: int = 10,
    num_test: int = 4,
    seed: int = 0,
    *,
    width: int = 288,
    height: int = 192,
    annotators: int = 4,
) -> list[dict[str, str]]:
    """Write generated fundus-like images with their soft maps in the Drishti-GS1 layout (the ``attention_unet``
    bundle's 2D embedded default).

    Layout: ``<out_dir>/Drishti-GS1_files/`` with ``Training/Images/drishtiGS_<k>.png`` and
    ``Training/GT/drishtiGS_<k>/SoftMap/drishtiGS_<k>_{OD,cup}segSoftmap.png`` (even ``k``: 002, 004, ...),
    ``Test/Images/`` and ``Test/Test_GT/`` (odd ``k``: 001, 003, ...; the real set interleaves its numbers too), and
    a ``README.txt`` saying the files are generated. Image ``k`` is drawn from
    ``numpy.random.default_rng([seed, 6, k])`` by :func:`~attnseg_monai.data.synth_fundus.render_fundus`. Written
    as the other samples are (:mod:`~attnseg_monai.data.samples`: atomic files, a manifest written last, nothing
    regenerated when complete, nothing of anyone else's overwritten). 288 x 192 pixels (the real photographs'
    aspect ratio at a tenth of their size) take about 20 ms per image.

    Args:
        out_dir: the folder to write into (created).
        num_train: training images (>= 1).
        num_test: test images (>= 1).
        seed: base seed.
        width: image width (>= 64).
        height: image height (>= 64).
        annotators: simulated annotators behind each soft map (>= 1).

    Returns:
        ``[]``: read the folder with :class:`DrishtiGSReader` (which converts the soft maps).

    Raises:
        ValueError: for bad counts or sizes.
        DatasetError: if files in ``out_dir`` differ from what would be written.
    """
    _check_count("num_train", num_train, 1)
    _check_count("num_test", num_test, 1)
    _check_count("seed", seed, 0)
    _check_count("width", width, 64)
    _check_count("height", height, 64)
    _check_count("annotators", annotators, 1)
    spec = {
        "sample": "drishti_gs",
        "version": 2,
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "width": width,
        "height": height,
        "annotators": annotators,
    }
    cases = [("Training", "GT", 2 * (i + 1)) for i in range(num_train)]
    cases += [("Test", "Test_GT", 2 * i + 1) for i in range(num_test)]

    def plans() -> Iterator[_Plan]:
        note = (
            "Generated by attnseg-monai (attnseg_monai.data.make_drishti_sample): fundus-like images and annotator "
            "soft maps in the Drishti-GS1 layout. No patient data; not images of the Drishti-GS1 data set.\n"
        )
        yield f"{_FOLDER}/README.txt", lambda: (note.encode("utf-8"), None)
        for section, gt, k in cases:
            stem = f"drishtiGS_{k:03d}"
            fundus = render_fundus(np.random.default_rng([seed, 6, k]), width, height, annotators)
            soft = f"{_FOLDER}/{section}/{gt}/{stem}/SoftMap/{stem}"
            yield _png_plan(f"{_FOLDER}/{section}/Images/{stem}.png", lambda a=fundus.image: a, compress_level=3)
            yield _png_plan(f"{soft}{_SUFFIX['disc']}.png", lambda a=fundus.disc_softmap: a)
            yield _png_plan(f"{soft}{_SUFFIX['cup']}.png", lambda a=fundus.cup_softmap: a)

    return _materialise(out_dir, spec, plans(), [])


def prepare_drishti_datalist(
    dataset_dir: str | os.PathLike,
    datalist_file: str | os.PathLike,
    *,
    embedded: bool,
    split: str = "training",
    fold: int | None = None,
    num_folds: int = 5,
    seed: int = 0,
    agreement: float = 0.5,
    cache_dir: str | os.PathLike | None = None,
    on_missing: str = "error",
    validate: bool = True,
    **sample_kwargs: Any,
) -> list[dict[str, Any]]:
    """The items of one split of a Drishti-GS1 data set, after making or reading it and checking its pairs.

    The ``Training`` section is the training set, dealt into ``num_folds`` seeded folds; the ``Test`` section is
    the validation set (the seed's 50/51 split). With ``fold=k`` the training images outside fold ``k`` train and
    fold ``k`` validates (the ``Test`` section is then left for a final test). Every pair is checked
    (:func:`~attnseg_monai.data.validate_pairs`: RGB image, label of the same size with values in {0, 1, 2}) before
    the datalist is written to ``datalist_file``.

    Args:
        dataset_dir: the data set folder (``Drishti-GS1_files`` or the folder holding it), or where the embedded
            sample goes.
        datalist_file: where the datalist JSON is written (atomically).
        embedded: make the embedded sample (:func:`make_drishti_sample`) in ``dataset_dir`` first.
        split: ``"training"``, ``"validation"`` or ``"all"``.
        fold: cross-validation fold (``None``: the ``Training`` images against the ``Test`` images).
        num_folds: folds the training images are dealt into.
        seed: split seed.
        agreement: share of annotators a pixel needs (:class:`DrishtiGSReader`).
        cache_dir: where the converted label maps go (default: in the data set's folder, or a user cache folder).
        on_missing: ``"error"`` (default) or ``"skip"`` for images without both soft maps (:class:`DrishtiGSReader`).
        validate: check every pair first.
        sample_kwargs: passed to :func:`make_drishti_sample` (``num_train``, ``num_test``, ``width``, ``height``);
            ignored unless ``embedded``.

    Raises:
        ValueError: for an unknown ``split``, a fold not in the datalist, or a folder that is not Drishti-GS1.
        attnseg_monai.data.DatasetError: listing every offending file and its problem.

    Example (train_2d.json)::

        "train#datalist": "$attnseg_monai.data.prepare_drishti_datalist(@dataset_dir, @datalist_file,
            embedded=@use_embedded_data, split='training', fold=@fold, **@embedded_sample)"
    """
    if split not in ("training", "validation", "all"):
        raise ValueError(f"split must be 'training', 'validation' or 'all', got {split!r}.")
    if embedded:
        make_drishti_sample(dataset_dir, **sample_kwargs)
    reader = DrishtiGSReader(agreement=agreement, cache_dir=cache_dir, on_missing=on_missing)
    items = reader.read(dataset_dir)
    training = [{k: v for k, v in i.items() if k != "section"} for i in items if i["section"] == "training"]
    test = [{k: v for k, v in i.items() if k != "section"} for i in items if i["section"] == "test"]
    if not training:
        raise DatasetError(f"Drishti-GS1 data set {dataset_dir}: no training image with both soft maps")
    if validate:
        validate_pairs(training + test, expected_channels=3, label_values=set(DRISHTI_CLASSES))
    datalist = make_datalist(training, val_fraction=0.0, num_folds=num_folds, seed=seed)
    datalist["validation"] = test
    write_datalist(datalist, datalist_file)
    train_items, val_items = select_fold(datalist, fold)
    logger.info(
        "Drishti-GS1 data in %s: %d training and %d validation images (datalist %s)",
        dataset_dir,
        len(train_items),
        len(val_items),
        datalist_file,
    )
    return {"training": train_items, "validation": val_items, "all": train_items + val_items}[split]


def drishti_inference_items(
    dataset_dir: str | os.PathLike,
    *,
    embedded: bool,
    exclude: Sequence[str | os.PathLike] = (),
    **sample_kwargs: Any,
) -> list[dict[str, str]]:
    """Fundus images to segment: the ``Test/Images`` of a Drishti-GS1 folder (also of the embedded sample, made
    first when ``embedded``), one image file, or the image files of a folder (never a folder in ``exclude``).

    Raises:
        FileNotFoundError: if ``dataset_dir`` does not exist or holds no image.
    """
    if embedded:
        make_drishti_sample(dataset_dir, **sample_kwargs)
    root = Path(dataset_dir).expanduser()
    if root.is_file():
        if not is_image_file(root):
            raise FileNotFoundError(f"{root}: not an image file this bundle reads.")
        return [{"image": str(root.absolute())}]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder.")
    base = _base(root)
    test = _child(base, "Test") if base is not None else None
    folder = _child(test, "Images") if test is not None else None
    folder = folder or (root / "images" if (root / "images").is_dir() else root)
    skip = {Path(p).expanduser().absolute() for p in exclude}
    if folder.absolute() in skip:
        raise FileNotFoundError(f"{folder}: is the output folder; name the folder of the images to segment.")
    files = list_image_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: holds no image file (png, jpg, tif).")
    return [{"image": str(p.absolute())} for p in files]
