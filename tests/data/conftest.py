"""Helpers that write tiny data sets in the real on-disk formats (Aperio XML, Montgomery/Shenzhen trees...)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnseg_monai.data import make_mitosis_sample


def write_image(path: Path, array: np.ndarray, format: str | None = None) -> Path:
    """Write ``array`` ((H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA) with PIL; the ending picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format=format)
    return path


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def binary_mask(height: int, width: int, box: tuple[int, int, int, int], value: int = 255) -> np.ndarray:
    """uint8 mask with ``value`` inside ``box`` = (row0, row1, col0, col1)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    r0, r1, c0, c1 = box
    mask[r0:r1, c0:c1] = value
    return mask


def write_aperio_xml(path: Path, polygons: Sequence[Sequence[tuple[float, float]]], microns_per_pixel=0.252) -> Path:
    """An Aperio ImageScope annotation file as MoNuSeg ships them: one Annotation, one Region per polygon."""
    regions = []
    for rid, poly in enumerate(polygons, start=1):
        vertices = "\n".join(f'          <Vertex X="{x:.6f}" Y="{y:.6f}" Z="0" />' for x, y in poly)
        regions.append(
            f'      <Region Id="{rid}" Type="0" Zoom="0.5" Selected="0" ImageLocation="" ImageFocus="-1" '
            f'Length="40.0" Area="100.0" LengthMicrons="10.1" AreaMicrons="6.3" Text="" NegativeROA="0" '
            f'InputRegionId="0" Analyze="1" DisplayId="{rid}">\n'
            f"        <Attributes />\n        <Vertices>\n{vertices}\n        </Vertices>\n      </Region>"
        )
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Annotations MicronsPerPixel="{microns_per_pixel:.6f}">\n'
        '  <Annotation Id="1" Name="" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0" '
        'Type="4" LineColor="65280" Visible="1" Selected="1" MarkupImagePath="" MacroName="">\n'
        '    <Attributes>\n      <Attribute Name="Description" Id="0" Value="" />\n    </Attributes>\n'
        "    <Regions>\n      <RegionAttributeHeaders>\n"
        '        <AttributeHeader Id="9999" Name="Region" ColumnWidth="-1" />\n'
        '        <AttributeHeader Id="9997" Name="Length" ColumnWidth="-1" />\n'
        "      </RegionAttributeHeaders>\n" + "\n".join(regions) + "\n    </Regions>\n    <Plots />\n"
        "  </Annotation>\n</Annotations>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


#: Three nuclei on a 24x20 (width x height) tile: a square, an overlapping triangle drawn later, and a polygon that
#: sticks out past the right edge.
MONUSEG_POLYGONS = [
    [(2.0, 2.0), (6.0, 2.0), (6.0, 6.0), (2.0, 6.0)],
    [(5.0, 5.0), (10.0, 5.0), (5.0, 10.0)],
    [(20.0, 12.0), (30.0, 12.0), (30.0, 16.0), (20.0, 16.0)],
]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def monuseg_root(tmp_path: Path) -> Path:
    root = tmp_path / "MoNuSeg 2018 Training Data"
    for i, stem in enumerate(["TCGA-A7-A13E-01Z-00-DX1", "TCGA-B0-5711-01Z-00-DX1"]):
        write_image(root / "Tissue Images" / f"{stem}.tif", rgb(20, 24, seed=i))
        write_aperio_xml(root / "Annotations" / f"{stem}.xml", MONUSEG_POLYGONS[: 3 - i])
    return root


@pytest.fixture
def montgomery_root(tmp_path: Path) -> Path:
    root = tmp_path / "MontgomerySet"
    for i in range(2):
        stem = f"MCUCXR_000{i}_{i}"
        write_image(root / "CXR_png" / f"{stem}.png", rgb(16, 20, seed=i)[..., 0])
        write_image(root / "ManualMask" / "leftMask" / f"{stem}.png", binary_mask(16, 20, (2, 12, 11, 17)))
        write_image(root / "ManualMask" / "rightMask" / f"{stem}.png", binary_mask(16, 20, (2, 12, 3, 9)))
    (root / "ClinicalReadings").mkdir()
    (root / "ClinicalReadings" / "MCUCXR_0000_0.txt").write_text("Patient's Sex: F\nPatient's Age: 040Y\nnormal\n")
    return root


@pytest.fixture
def shenzhen_root(tmp_path: Path) -> Path:
    root = tmp_path / "ChinaSet_AllFiles"
    for i in range(3):
        stem = f"CHNCXR_000{i + 1}_{i % 2}"
        write_image(root / "CXR_png" / f"{stem}.png", rgb(16, 20, seed=i)[..., 0])
        if i < 2:  # masks exist for only part of the images, as in the published set
            write_image(root / "mask" / f"{stem}_mask.png", binary_mask(16, 20, (2, 12, 3, 17)))
    return root


@pytest.fixture(scope="session")
def mitosis_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """Two full-size (1720x1280) generated slides, made once per test session."""
    out = tmp_path_factory.mktemp("mitosis") / "sample"
    return out, make_mitosis_sample(out, num_slides=2)
