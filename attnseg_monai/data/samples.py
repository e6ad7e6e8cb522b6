"""Embedded default data: the sample data sets a bundle trains on when no ``dataset_dir`` is given.

Each maker writes one data set into a folder chosen by the caller (typically ``<bundle>/data/generated/<name>``)
in the generic ``images/`` + ``labels/`` (or ``masks/``) layout, and returns its datalist items:

* :func:`make_nuclei_sample` (Han-Net): the real, hand-annotated 2018 Data Science Bowl image vendored from the
  StarDist wheel (BBBC038v1, CC0) plus generated H&E-like tiles; 16-bit instance masks.
* :func:`make_mitosis_sample` (MCSA-UNet): generated 1720x1280 H&E-like slides; 0/255 masks of mitotic figures.
* :func:`make_chest_xray_sample` (focal/attention U-Net): generated chest radiographs; 0/255 lung masks.

Generation is deterministic: item ``i`` of a maker is drawn from ``numpy.random.default_rng([seed, stream, i])``
(``stream`` is 1 for nuclei tiles, 2 for mitosis slides, 3 for chest X-rays), so the first items do not depend on
how many are made. Files are written atomically; a manifest (``attnseg_sample.json``) with the SHA-256 of every
file and of its pixels is written last. A later call with the same settings that finds every file intact returns
at once without generating. Existing files are never overwritten unless they are unchanged files of an earlier
sample run (their checksum is in the old manifest); any other differing file is left alone and reported. Unchanged
files of an earlier run that the new settings no longer make (fewer slides, say) are removed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..io.atomic import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
from ..io.images import encode_png
from .errors import DatasetError
from .synth_histology import render_he_tile, render_mitosis_slide
from .synth_xray import render_chest_xray

__all__ = [
    "ASSETS_DIR",
    "MANIFEST_NAME",
    "NUCLEI_ASSET_LICENSE",
    "load_nuclei_asset",
    "make_chest_xray_sample",
    "make_mitosis_sample",
    "make_nuclei_sample",
    "verify_sample",
]

logger = logging.getLogger(__name__)

#: Folder of the vendored files.
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
#: Licence and provenance of the vendored nuclei sample.
NUCLEI_ASSET_LICENSE = ASSETS_DIR / "LICENSE-nuclei-sample.txt"
#: File name of the manifest written into every sample folder.
MANIFEST_NAME = "attnseg_sample.json"
_FORMAT_VERSION = 1

# a planned file: relative path, and a function giving (bytes, pixel checksum or None)
_Plan = tuple[str, Callable[[], tuple[bytes, str | None]]]


def _pixels_sha(array: np.ndarray) -> str:
    arr = np.ascontiguousarray(array)
    header = f"{arr.dtype.str}{arr.shape}".encode()
    return sha256_bytes(header + arr.tobytes())


def load_nuclei_asset() -> tuple[np.ndarray, np.ndarray]:
    """The vendored BBBC038 sample as arrays: ``(image, instances)``, uint16 ``(512, 512)`` each.

    Instance ids are as in the original file (125 nuclei with ids between 1 and 183).

    Raises:
        FileNotFoundError: if the package was installed without its data files.
    """
    paths = [ASSETS_DIR / "img2d.tif", ASSETS_DIR / "mask2d.tif"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"vendored nuclei sample missing ({', '.join(missing)}): reinstall attnseg-monai.")
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            arrays.append(np.asarray(image))
    return arrays[0], arrays[1]


def _load_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verify_sample(out_dir: str | os.PathLike, spec: dict[str, Any] | None = None) -> bool:
    """Whether ``out_dir`` holds a complete, unmodified sample (and, if ``spec`` is given, one made with it).

    Every file listed in the manifest must exist with the recorded size and SHA-256.
    """
    out = Path(out_dir)
    manifest = _load_manifest(out)
    if manifest is None or (spec is not None and manifest.get("spec") != spec):
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for rel, entry in files.items():
        path = out / rel
        try:
            if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def _items(out: Path, pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"image": str((out / i).absolute()), "label": str((out / lab).absolute())} for i, lab in pairs]


def _materialise(
    out_dir: str | os.PathLike, spec: dict[str, Any], plans: Iterator[_Plan], pairs: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """Write the planned files unless the folder already holds this exact sample; see the module docstring."""
    out = Path(out_dir).expanduser().absolute()
    if verify_sample(out, spec):
        logger.debug("sample %s in %s is complete; nothing to do.", spec.get("sample"), out)
        return _items(out, pairs)
    previous = _load_manifest(out) or {}
    ours = {rel: entry.get("sha256") for rel, entry in (previous.get("files") or {}).items() if isinstance(entry, dict)}
    records: dict[str, dict[str, Any]] = {}
    conflicts: list[tuple[str, str]] = []
    for rel, make in plans:
        data, pixels = make()
        digest = sha256_bytes(data)
        target = out / rel
        if target.exists():
            current = sha256_file(target) if target.is_file() else None
            if current != digest and (current is None or ours.get(rel) != current):
                conflicts.append(
                    (
                        str(target),
                        "exists and differs from the generated file; left unchanged (move it away or "
                        "choose another folder)",
                    )
                )
                continue
            if current != digest:
                atomic_write_bytes(target, data)
        else:
            atomic_write_bytes(target, data)
        records[rel] = {"sha256": digest, "bytes": len(data), **({"pixels_sha256": pixels} if pixels else {})}
    DatasetError.raise_if_any(conflicts, f"sample folder {out} (no manifest written)")
    for rel, digest in ours.items():  # files of an earlier run with other settings, still unchanged
        stale = out / rel
        if rel not in records and stale.is_file() and sha256_file(stale) == digest:
            stale.unlink()
    manifest = {
        "format_version": _FORMAT_VERSION,
        "spec": spec,
        "items": [{"image": i, "label": lab} for i, lab in pairs],
        "files": records,
    }
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return _items(out, pairs)


def _png_plan(rel: str, array: Callable[[], np.ndarray], compress_level: int = 6) -> _Plan:
    def make() -> tuple[bytes, str | None]:
        arr = array()
        return encode_png(arr, compress_level), _pixels_sha(arr)

    return rel, make


def _check_count(name: str, value: int, minimum: int) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def make_nuclei_sample(
    out_dir: str | os.PathLike, num_tiles: int = 10, seed: int = 0, tile_size: int = 256, include_real: bool = True
) -> list[dict[str, str]]:
    """Write the nuclei sample (Han-Net's embedded default) and return its datalist items.

    Layout: ``images/*.png`` (8-bit RGB) and ``labels/*.png`` (16-bit instance ids, 0 background), plus the
    provenance file ``LICENSE-nuclei-sample.txt``. ``bbbc038_img2d`` is the real annotated image (grey, copied
    into three channels, values unchanged; 125 nuclei renumbered 1..125); ``he_tile_XXX`` are generated.

    Args:
        out_dir: target folder (created).
        num_tiles: number of generated H&E-like tiles.
        seed: base seed of the generated tiles.
        tile_size: width and height of the generated tiles (>= 32).
        include_real: include the real BBBC038 image.

    Returns:
        ``[{"image": path, "label": path}, ...]`` with absolute paths, real image first.

    Raises:
        ValueError: for bad counts or sizes.
        DatasetError: if files in ``out_dir`` differ from what would be written (nothing of theirs is touched).
    """
    _check_count("num_tiles", num_tiles, 0)
    _check_count("seed", seed, 0)
    _check_count("tile_size", tile_size, 32)
    if num_tiles == 0 and not include_real:
        raise ValueError("nothing to make: set num_tiles >= 1 or include_real=True.")
    spec = {
        "sample": "nuclei",
        "version": 1,
        "seed": seed,
        "num_tiles": num_tiles,
        "tile_size": tile_size,
        "include_real": include_real,
    }
    pairs: list[tuple[str, str]] = []
    if include_real:
        pairs.append(("images/bbbc038_img2d.png", "labels/bbbc038_img2d.png"))
    pairs += [(f"images/he_tile_{i:03d}.png", f"labels/he_tile_{i:03d}.png") for i in range(num_tiles)]

    def plans() -> Iterator[_Plan]:
        if include_real:
            image, mask = load_nuclei_asset()
            if image.max() > 255:
                image = image.astype(np.float64) * (255.0 / image.max())
            rgb = np.repeat(image.astype(np.uint8)[..., None], 3, axis=2)
            ids = np.unique(mask)
            relabelled = np.searchsorted(ids[ids > 0], mask, side="left").astype(np.uint16) + 1
            relabelled[mask == 0] = 0
            yield _png_plan(pairs[0][0], lambda: rgb)
            yield _png_plan(pairs[0][1], lambda: relabelled)
            yield "LICENSE-nuclei-sample.txt", lambda: (NUCLEI_ASSET_LICENSE.read_bytes(), None)
        offset = 1 if include_real else 0
        for i in range(num_tiles):
            rgb_tile, inst = render_he_tile(np.random.default_rng([seed, 1, i]), tile_size)
            yield _png_plan(pairs[offset + i][0], lambda a=rgb_tile: a)
            yield _png_plan(pairs[offset + i][1], lambda a=inst: a)

    return _materialise(out_dir, spec, plans(), pairs)


def make_mitosis_sample(
    out_dir: str | os.PathLike, num_slides: int = 6, seed: int = 0, width: int = 1720, height: int = 1280
) -> list[dict[str, str]]:
    """Write the mitosis sample (MCSA-UNet's embedded default) and return its datalist items.

    Layout: ``images/slide_XXX.png`` (8-bit RGB, ``width`` x ``height``) and ``labels/slide_XXX.png`` (8-bit grey,
    255 on mitotic figures, 0 elsewhere; every slide has 1 to 4 figures among roughly 1,300 ordinary nuclei).
    About 2.2 MB per full-size slide; under a second per slide to make on one core.

    Args:
        out_dir: target folder (created).
        num_slides: number of slides.
        seed: base seed.
        width: slide width in pixels (>= 128).
        height: slide height in pixels (>= 128).

    Returns:
        ``[{"image": path, "label": path}, ...]`` with absolute paths.

    Raises:
        ValueError: for bad counts or sizes.
        DatasetError: if files in ``out_dir`` differ from what would be written (nothing of theirs is touched).
    """
    _check_count("num_slides", num_slides, 1)
    _check_count("seed", seed, 0)
    _check_count("width", width, 128)
    _check_count("height", height, 128)
    spec = {"sample": "mitosis", "version": 1, "seed": seed, "num_slides": num_slides, "width": width, "height": height}
    pairs = [(f"images/slide_{i:03d}.png", f"labels/slide_{i:03d}.png") for i in range(num_slides)]

    def plans() -> Iterator[_Plan]:
        for i, (image_rel, label_rel) in enumerate(pairs):
            rgb, label, _ = render_mitosis_slide(np.random.default_rng([seed, 2, i]), width, height)
            yield _png_plan(image_rel, lambda a=rgb: a, compress_level=3)
            yield _png_plan(label_rel, lambda a=label: a)

    return _materialise(out_dir, spec, plans(), pairs)


def make_chest_xray_sample(
    out_dir: str | os.PathLike, num_images: int = 12, seed: int = 0, size: int = 256
) -> list[dict[str, str]]:
    """Write the chest X-ray sample (focal/attention U-Net's embedded default) and return its datalist items.

    Layout: ``images/cxr_XXX.png`` (8-bit grey, ``size`` x ``size``) and ``masks/cxr_XXX.png`` (8-bit grey, 255 on
    both lung fields, 0 elsewhere).

    Args:
        out_dir: target folder (created).
        num_images: number of radiographs.
        seed: base seed.
        size: width and height in pixels (>= 64).

    Returns:
        ``[{"image": path, "label": path}, ...]`` with absolute paths.

    Raises:
        ValueError: for bad counts or sizes.
        DatasetError: if files in ``out_dir`` differ from what would be written (nothing of theirs is touched).
    """
    _check_count("num_images", num_images, 1)
    _check_count("seed", seed, 0)
    _check_count("size", size, 64)
    spec = {"sample": "chest_xray", "version": 1, "seed": seed, "num_images": num_images, "size": size}
    pairs = [(f"images/cxr_{i:03d}.png", f"masks/cxr_{i:03d}.png") for i in range(num_images)]

    def plans() -> Iterator[_Plan]:
        for i, (image_rel, mask_rel) in enumerate(pairs):
            image, mask = render_chest_xray(np.random.default_rng([seed, 3, i]), size)
            yield _png_plan(image_rel, lambda a=image: a)
            yield _png_plan(mask_rel, lambda a=mask: a)

    return _materialise(out_dir, spec, plans(), pairs)
