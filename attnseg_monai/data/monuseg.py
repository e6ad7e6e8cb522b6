"""MoNuSeg reader (Han-Net, seed 000): H&E tiles with Aperio ImageScope XML polygon annotations.

Accepted trees::

    MoNuSeg 2018 Training Data/         MoNuSegTestData/
      Tissue Images/  TCGA-xx.tif         TCGA-xx.tif
      Annotations/    TCGA-xx.xml         TCGA-xx.xml

The annotation folder may also be called ``annotations``/``xml``, the image folder ``Tissue_Images``/``images``;
images may be TIFF or PNG. Each XML (``Annotations/Annotation/Regions/Region/Vertices/Vertex`` with float ``X``,
``Y`` in pixels) is rasterised once into a 16-bit PNG instance mask (ids 1..N in region order, later regions win
where polygons overlap, clipped to the image) in the cache folder; the datalist points at the cached masks.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from ..io.atomic import atomic_write_bytes, sha256_bytes
from ..io.images import encode_png, read_header
from ..io.suffixes import MONUSEG_IMAGE_EXTENSIONS
from .base import DatasetReader, register_reader
from .cache import resolve_cache_dir
from .errors import DatasetError
from .pairing import pair_by_stem

__all__ = ["MoNuSegReader", "parse_aperio_xml", "rasterize_polygons"]

logger = logging.getLogger(__name__)

_IMAGE_DIR_NAMES = ("tissue images", "tissue_images", "tissueimages", "images", "image")
_XML_DIR_NAMES = ("annotations", "annotation", "xml", "xmls")
#: bump when the rasterisation changes, so cached masks are rebuilt
_RASTER_VERSION = "1"


def parse_aperio_xml(path: str | os.PathLike) -> list[np.ndarray]:
    """The polygons of an Aperio ImageScope XML file, one ``(K, 2)`` float array of ``(x, y)`` per ``Region``.

    Regions with fewer than 3 vertices cannot enclose an area and are left out (logged).

    Raises:
        ValueError: if the file is not well-formed XML or a vertex has a non-numeric coordinate.
    """
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        raise ValueError(f"not well-formed XML ({err})") from err
    polygons: list[np.ndarray] = []
    skipped = 0
    for region in tree.getroot().iter("Region"):
        coords: list[tuple[float, float]] = []
        for vertex in region.iter("Vertex"):
            try:
                coords.append((float(vertex.attrib["X"]), float(vertex.attrib["Y"])))
            except (KeyError, ValueError) as err:
                rid = region.attrib.get("Id", "?")
                raise ValueError(f"Region Id={rid}: vertex without numeric X/Y ({vertex.attrib})") from err
        if len(coords) < 3:
            skipped += 1
            continue
        polygons.append(np.asarray(coords, dtype=np.float64))
    if skipped:
        logger.info("%s: left out %d region(s) with fewer than 3 vertices.", path, skipped)
    return polygons


def rasterize_polygons(polygons: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """Draw ``polygons`` (``(K, 2)`` arrays of ``(x, y)`` pixel coordinates) into a uint16 instance mask.

    Polygon ``i`` gets id ``i + 1``; later polygons overwrite earlier ones where they overlap; parts outside the
    ``width`` x ``height`` image are clipped. A pixel belongs to a polygon when it lies inside or on its outline
    (PIL's rule), so even sub-pixel nuclei leave a mark.

    Returns:
        array of shape ``(height, width)``, dtype uint16.

    Raises:
        ValueError: for a non-positive size or more than 65535 polygons.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}.")
    if len(polygons) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(polygons)} polygons do not fit a uint16 instance mask (at most 65535).")
    canvas = Image.new("I", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for index, poly in enumerate(polygons, start=1):
        draw.polygon([(float(x), float(y)) for x, y in poly], fill=index, outline=index)
    return np.asarray(canvas, dtype=np.int32).astype(np.uint16)


def _find_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    by_lower = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    for name in names:
        if name in by_lower:
            return by_lower[name]
    return None


def _files(folder: Path, endings: tuple[str, ...]) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in endings
    )


@register_reader
class MoNuSegReader(DatasetReader):
    """MoNuSeg 2018 training/test data: tissue images + Aperio XML annotations -> cached instance masks.

    Args:
        cache_dir: where the rasterised masks go (default ``<root>/.attnseg_cache/monuseg``; a user cache
            folder if the root is read-only). Masks are named ``<stem>_<hash>.png``, the hash covering the XML
            bytes and the image size, so an edited XML gets a fresh mask and nothing is rasterised twice.
        on_missing: ``"error"`` (default) or ``"skip"`` for tiles without XML and XML without tile.

    Raises:
        ValueError: for an unknown ``on_missing``.

    Example::

        >>> items = MoNuSegReader().read("/data/MoNuSeg 2018 Training Data")     # 1000x1000 H&E tiles
        >>> items = MoNuSegReader(cache_dir="/scratch/masks").read("/data/MoNuSegTestData")

    The layout holds 2D tiles only; there is no 3D form of it.
    """

    name: ClassVar[str] = "monuseg"
    description: ClassVar[str] = "MoNuSeg: 'Tissue Images/*.tif' + 'Annotations/*.xml' (or both in one folder)"
    priority: ClassVar[int] = 30

    @classmethod
    def _layout(cls, root: Path) -> tuple[Path, Path] | None:
        if not root.is_dir():
            return None
        xml_dir = _find_dir(root, _XML_DIR_NAMES)
        image_dir = _find_dir(root, _IMAGE_DIR_NAMES)
        if xml_dir is not None and image_dir is not None and _files(xml_dir, (".xml",)):
            return image_dir, xml_dir
        xmls = {p.stem.lower() for p in _files(root, (".xml",))}
        if xmls & {p.stem.lower() for p in _files(root, MONUSEG_IMAGE_EXTENSIONS)}:
            return root, root
        return None

    @classmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        return cls._layout(Path(root)) is not None

    def read(self, root: str | os.PathLike) -> list[dict[str, str]]:
        base = self._root(root)
        layout = self._layout(base)
        if layout is None:
            raise ValueError(
                f"{str(base)!r} is not a MoNuSeg folder: expected 'Tissue Images/' + 'Annotations/' with *.xml, "
                "or *.tif and *.xml files with the same stems in one folder."
            )
        image_dir, xml_dir = layout
        pairs = pair_by_stem(_files(image_dir, MONUSEG_IMAGE_EXTENSIONS), _files(xml_dir, (".xml",)), label_suffixes=())
        pairs = pairs.resolve(self.on_missing, f"MoNuSeg data set {base}")
        cache = resolve_cache_dir(base, self.cache_dir, self.name)
        items: list[dict[str, str]] = []
        problems: list[tuple[str, str]] = []
        for image, xml in pairs:
            try:
                mask = self._mask(image, xml, cache)
            except (OSError, ValueError) as err:
                problems.append((str(xml if isinstance(err, ValueError) else image), str(err)))
                continue
            items.append({"image": str(image), "label": str(mask)})
        DatasetError.raise_if_any(problems, f"MoNuSeg data set {base}")
        return items

    @staticmethod
    def _mask(image: Path, xml: Path, cache: Path) -> Path:
        try:
            header = read_header(image)
        except OSError as err:
            raise OSError(f"unreadable image ({err})") from err
        xml_bytes = xml.read_bytes()
        key = sha256_bytes(xml_bytes + f"|{header.width}x{header.height}|v{_RASTER_VERSION}".encode())[:12]
        target = cache / f"{xml.stem}_{key}.png"
        if target.is_file():
            return target
        polygons = parse_aperio_xml(xml)
        if polygons:
            outside = sum(
                1
                for p in polygons
                if p[:, 0].max() < 0
                or p[:, 1].max() < 0
                or p[:, 0].min() >= header.width
                or p[:, 1].min() >= header.height
            )
            if outside == len(polygons):
                raise ValueError(
                    f"all {outside} polygons lie outside the {header.width}x{header.height} image: "
                    "are the coordinates in pixels of this image?"
                )
        else:
            logger.warning("%s has no polygon with 3 or more vertices: its mask is empty.", xml)
        mask = rasterize_polygons(polygons, header.width, header.height)
        atomic_write_bytes(target, encode_png(mask))
        return target
