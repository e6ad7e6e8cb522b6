"""Whole-slide images: a pyramidal TIFF written here goes tile by tile to a tiled label TIFF and a preview PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from monai.data import WSIReader
from PIL import Image

from attnseg_monai.inference import MANIFEST_NAME, is_whole_slide, open_slide, tissue_mask
from attnseg_monai.inference.slides import MonaiSlideSource, TiffTileSource

from .helpers import QUIET, write_png, write_pyramid_tiff


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slides")
    image = write_pyramid_tiff(folder / "slide_01.tif", height=640, width=900)
    return folder / "slide_01.tif", image


def test_slide_detection_and_region_reads_match_monai(slide, tmp_path):
    path, image = slide
    assert is_whole_slide(path)
    write_png(tmp_path / "tile.png", 64, 64)
    Image.fromarray(image[:300, :300]).save(tmp_path / "plain.tif")
    assert not is_whole_slide(tmp_path / "tile.png") and not is_whole_slide(tmp_path / "plain.tif")
    with TiffTileSource(path) as src:
        assert src.levels == [(640, 900), (320, 450), (160, 225)]
        np.testing.assert_allclose(src.mpp, (0.25, 0.25))
        region = src.read_region(0, 250, 500, 300, 333)
        np.testing.assert_array_equal(region, image[250:550, 500:833])
        # beyond the border: white
        edge = src.read_region(0, 540, 850, 200, 100)
        np.testing.assert_array_equal(edge[:100, :50], image[540:, 850:])
        assert (edge[100:] == 255).all() and (edge[:, 50:] == 255).all()
        np.testing.assert_array_equal(src.read_region(1, 10, 20, 64, 64), image[::2, ::2][10:74, 20:84])
    reader = WSIReader(backend="tifffile")
    wsi = reader.read(str(path))
    patch, _ = reader.get_data(wsi, location=(250, 500), size=(300, 333), level=0)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(patch), 0, -1), region)
    with MonaiSlideSource(path, backend="tifffile") as monai_src:
        np.testing.assert_array_equal(monai_src.read_region(0, 250, 500, 300, 333), region)


def test_tissue_mask_finds_the_blob(slide):
    path, image = slide
    with open_slide(path, "tifffile") as src:
        thumb = src.thumbnail(256)
    mask = tissue_mask(thumb)
    assert 0.1 < mask.mean() < 0.5
    assert mask[thumb.shape[0] // 2 - 5 : thumb.shape[0] // 2 + 5, thumb.shape[1] // 2].all()
    assert not mask[:5, :5].any()


def test_slide_goes_to_tiled_label_tiff_and_preview(make_predictor, slide, tmp_path):
    path, image = slide
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / path.name).write_bytes(path.read_bytes())
    predictor = make_predictor()
    slides = {"wsi_tile_size": 256, "wsi_backend": "tifffile", "wsi_margin": 32}
    summary = predictor.predict_files(tmp_path / "in", tmp_path / "out", **slides, **QUIET)
    assert summary.ok and summary.written == ["slide_01"], summary.failed
    out = tmp_path / "out"
    with tifffile.TiffFile(out / "slide_01_classes.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        classes = page.asarray()
    assert classes.shape == (640, 900) and classes.dtype == np.uint8 and classes.max() <= 2
    instances = tifffile.imread(out / "slide_01_instances.tif")
    assert instances.shape == (640, 900) and instances.dtype == np.uint32
    record = json.loads((out / MANIFEST_NAME).read_text())["cases"]["slide_01"]
    assert record["kind"] == "wsi" and set(record["outputs"]) == {"instances", "classes", "preview"}
    info = record["slide"]
    assert info["tiles"] == 3 * 4 and 0 < info["tissue_tiles"] < info["tiles"]
    # tiles without tissue stay background; the background corner is one
    assert (classes[:256, :256] == 0).all()
    preview = Image.open(out / "slide_01_preview.png")
    assert preview.mode == "RGB" and max(preview.size) <= 1024 and preview.size[0] > preview.size[1]
    # a tissue tile equals the bundle run on the same region (tile + margin) in memory: no transposition slip
    y0, x0 = 256, 256
    region = image[y0 - 32 : y0 + 256 + 32, x0 - 32 : x0 + 256 + 32]
    direct = predictor.predict_array(region.transpose(2, 1, 0))["classes"].T
    np.testing.assert_array_equal(classes[y0 : y0 + 256, x0 : x0 + 256], direct[32:-32, 32:-32])
    # resumable like any case
    again = predictor.predict_files(tmp_path / "in", out, **slides, **QUIET)
    assert again.skipped == ["slide_01"]


def test_unreadable_slide_is_a_failed_case(make_predictor, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.svs").write_bytes(b"II*\x00" + b"\x00" * 20)
    summary = make_predictor().predict_files(tmp_path / "in", tmp_path / "out", wsi_tile_size=256, **QUIET)
    assert [f["case"] for f in summary.failed] == ["broken"]
    assert not list((tmp_path / "out").glob("broken*"))
