"""Readers on tiny files written in the real layouts: MoNuSeg XML, Montgomery, Shenzhen, generic folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnseg_monai.data import (
    DatasetError,
    ImageMaskFolderReader,
    MitosisReader,
    MoNuSegReader,
    find_reader,
    list_readers,
    pair_by_stem,
    parse_aperio_xml,
    rasterize_polygons,
    read_dataset,
)
from attnseg_monai.data.pairing import image_key_candidates, label_key

from .conftest import MONUSEG_POLYGONS, binary_mask, rgb, snapshot, write_aperio_xml, write_image


def _pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# ---------------------------------------------------------------- MoNuSeg


def test_parse_aperio_xml_reads_regions_and_skips_degenerate(tmp_path: Path):
    xml = write_aperio_xml(tmp_path / "a.xml", [*MONUSEG_POLYGONS, [(1.0, 1.0), (2.0, 2.0)]])
    polygons = parse_aperio_xml(xml)
    assert len(polygons) == 3  # the two-vertex region cannot enclose an area
    np.testing.assert_allclose(polygons[1], np.array(MONUSEG_POLYGONS[1]))


def test_parse_aperio_xml_reports_bad_files(tmp_path: Path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<Annotations><Annotation>")
    with pytest.raises(ValueError, match="not well-formed"):
        parse_aperio_xml(broken)
    bad_vertex = tmp_path / "bad.xml"
    bad_vertex.write_text(
        '<Annotations><Region Id="7"><Vertices><Vertex X="a" Y="1"/></Vertices></Region></Annotations>'
    )
    with pytest.raises(ValueError, match="Id=7"):
        parse_aperio_xml(bad_vertex)


def test_rasterize_polygons_ids_overlap_and_clipping():
    polygons = [np.array(p) for p in MONUSEG_POLYGONS]
    mask = rasterize_polygons(polygons, width=24, height=20)
    assert mask.shape == (20, 24) and mask.dtype == np.uint16
    assert set(np.unique(mask)) == {0, 1, 2, 3}
    # the square covers rows/cols 2..6 inclusive (outline included); the later triangle wins where they overlap
    assert mask[2, 2] == 1 and mask[3, 3] == 1
    assert mask[5, 5] == 2 and mask[6, 6] == 2
    assert mask[2:7, 2:7].size == 25 and np.count_nonzero(mask[2:7, 2:7]) == 25
    # the third polygon is clipped at the right edge (x = 23) without error
    assert mask[14, 23] == 3 and mask[14, 19] == 0
    with pytest.raises(ValueError, match="positive"):
        rasterize_polygons(polygons, 0, 10)


def test_monuseg_reader_rasterises_into_cache_and_leaves_data_untouched(monuseg_root: Path, tmp_path: Path):
    before = snapshot(monuseg_root)
    assert find_reader(monuseg_root).name == "monuseg"
    cache = tmp_path / "cache"
    items = read_dataset(monuseg_root, cache_dir=cache)
    assert snapshot(monuseg_root) == before  # nothing written next to the user's files
    assert [Path(i["image"]).name for i in items] == ["TCGA-A7-A13E-01Z-00-DX1.tif", "TCGA-B0-5711-01Z-00-DX1.tif"]
    first = _pixels(items[0]["label"])
    assert first.dtype == np.uint16 and first.shape == (20, 24)
    np.testing.assert_array_equal(first, rasterize_polygons([np.array(p) for p in MONUSEG_POLYGONS], 24, 20))
    assert set(np.unique(_pixels(items[1]["label"]))) == {0, 1, 2}
    assert all(Path(i["label"]).parent == cache / "monuseg" for i in items)

    # a second read reuses the cached masks; an edited XML gets a new mask
    mtime = os.stat(items[0]["label"]).st_mtime_ns
    again = read_dataset(monuseg_root, cache_dir=cache)
    assert again == items and os.stat(items[0]["label"]).st_mtime_ns == mtime
    write_aperio_xml(monuseg_root / "Annotations" / "TCGA-A7-A13E-01Z-00-DX1.xml", MONUSEG_POLYGONS[:1])
    edited = read_dataset(monuseg_root, cache_dir=cache)
    assert edited[0]["label"] != items[0]["label"]
    assert set(np.unique(_pixels(edited[0]["label"]))) == {0, 1}


def test_monuseg_default_cache_is_inside_root(monuseg_root: Path):
    items = MoNuSegReader().read(monuseg_root)
    assert all(Path(i["label"]).parent == monuseg_root / ".attnseg_cache" / "monuseg" for i in items)
    # the cache folder does not confuse a second detection
    assert find_reader(monuseg_root).name == "monuseg"


def test_monuseg_flat_test_layout(tmp_path: Path):
    root = tmp_path / "MoNuSegTestData"
    write_image(root / "TCGA-2Z-A9J9-01A-01-TS1.tif", rgb(20, 24))
    write_aperio_xml(root / "TCGA-2Z-A9J9-01A-01-TS1.xml", MONUSEG_POLYGONS)
    items = read_dataset(root, cache_dir=tmp_path / "c")
    assert len(items) == 1 and items[0]["image"].endswith(".tif")


def test_monuseg_collects_every_problem(monuseg_root: Path, tmp_path: Path):
    write_image(monuseg_root / "Tissue Images" / "TCGA-no-xml.tif", rgb(20, 24))
    write_aperio_xml(monuseg_root / "Annotations" / "TCGA-no-image.xml", MONUSEG_POLYGONS)
    with pytest.raises(DatasetError) as info:
        read_dataset(monuseg_root, cache_dir=tmp_path / "c")
    message = str(info.value)
    assert "TCGA-no-xml.tif" in message and "no label file" in message
    assert "TCGA-no-image.xml" in message and "no image file" in message
    assert len(info.value.problems) == 2
    # with on_missing="skip" the complete pairs are read
    assert len(read_dataset(monuseg_root, cache_dir=tmp_path / "c", on_missing="skip")) == 2


def test_monuseg_reports_corrupt_xml_and_coordinates_off_image(monuseg_root: Path, tmp_path: Path):
    (monuseg_root / "Annotations" / "TCGA-A7-A13E-01Z-00-DX1.xml").write_text("<Annotations><Regions>")
    write_aperio_xml(
        monuseg_root / "Annotations" / "TCGA-B0-5711-01Z-00-DX1.xml", [[(500, 500), (600, 500), (550, 600)]]
    )
    with pytest.raises(DatasetError) as info:
        read_dataset(monuseg_root, cache_dir=tmp_path / "c")
    message = str(info.value)
    assert "TCGA-A7-A13E-01Z-00-DX1.xml: not well-formed XML" in message
    assert "TCGA-B0-5711-01Z-00-DX1.xml: all 1 polygons lie outside the 24x20 image" in message


# ---------------------------------------------------------------- chest X-ray


def test_montgomery_merges_left_and_right(montgomery_root: Path, tmp_path: Path):
    before = snapshot(montgomery_root)
    assert find_reader(montgomery_root).name == "montgomery"
    items = read_dataset(montgomery_root, cache_dir=tmp_path / "c")
    assert snapshot(montgomery_root) == before
    assert [Path(i["image"]).name for i in items] == ["MCUCXR_0000_0.png", "MCUCXR_0001_1.png"]
    merged = _pixels(items[0]["label"])
    expected = binary_mask(16, 20, (2, 12, 11, 17)) | binary_mask(16, 20, (2, 12, 3, 9))
    np.testing.assert_array_equal(merged, expected)
    assert set(np.unique(merged)) == {0, 255}


def test_montgomery_missing_right_mask(montgomery_root: Path, tmp_path: Path):
    (montgomery_root / "ManualMask" / "rightMask" / "MCUCXR_0001_1.png").unlink()
    with pytest.raises(DatasetError, match=r"MCUCXR_0001_1.png: no right-lung mask"):
        read_dataset(montgomery_root, cache_dir=tmp_path / "c")
    items = read_dataset(montgomery_root, cache_dir=tmp_path / "c", on_missing="skip")
    assert [Path(i["image"]).name for i in items] == ["MCUCXR_0000_0.png"]


def test_montgomery_left_right_size_mismatch(montgomery_root: Path, tmp_path: Path):
    write_image(montgomery_root / "ManualMask" / "rightMask" / "MCUCXR_0000_0.png", binary_mask(10, 20, (1, 5, 1, 5)))
    with pytest.raises(DatasetError, match="left and right masks differ in size"):
        read_dataset(montgomery_root, cache_dir=tmp_path / "c")


def test_shenzhen_pairs_mask_suffix_and_skips_unmasked(shenzhen_root: Path):
    before = snapshot(shenzhen_root)
    assert find_reader(shenzhen_root).name == "shenzhen"
    items = read_dataset(shenzhen_root)
    assert snapshot(shenzhen_root) == before  # nothing derived, nothing written
    assert [(Path(i["image"]).name, Path(i["label"]).name) for i in items] == [
        ("CHNCXR_0001_0.png", "CHNCXR_0001_0_mask.png"),
        ("CHNCXR_0002_1.png", "CHNCXR_0002_1_mask.png"),
    ]
    with pytest.raises(DatasetError, match="CHNCXR_0003_0.png: no label file"):
        read_dataset(shenzhen_root, on_missing="error")


# ---------------------------------------------------------------- generic folders and mitosis


def test_generic_folders_pair_suffixes_and_endings(tmp_path: Path):
    root = tmp_path / "data"
    for stem, label_name in [("a", "a.png"), ("b", "b_mask.png"), ("c", "C_Label.tif"), ("d_img", "d_seg.png")]:
        write_image(root / "images" / f"{stem}.png", rgb(8, 8))
        write_image(root / "labels" / label_name, binary_mask(8, 8, (1, 4, 1, 4)))
    assert find_reader(root).name == "folders"
    items = read_dataset(root)
    pairs = [(Path(i["image"]).name, Path(i["label"]).name) for i in items]
    assert pairs == [("a.png", "a.png"), ("b.png", "b_mask.png"), ("c.png", "C_Label.tif"), ("d_img.png", "d_seg.png")]
    assert all(os.path.isabs(i["image"]) and os.path.isabs(i["label"]) for i in items)


def test_generic_flat_folder_and_explicit_dirs(tmp_path: Path):
    flat = tmp_path / "flat"
    write_image(flat / "s01.jpg", rgb(8, 8))
    write_image(flat / "s01_label.png", binary_mask(8, 8, (0, 2, 0, 2)))
    assert find_reader(flat).name == "folders"
    assert [Path(i["label"]).name for i in read_dataset(flat)] == ["s01_label.png"]

    custom = tmp_path / "custom"
    write_image(custom / "he" / "x.png", rgb(8, 8))
    write_image(custom / "truth" / "x_gt.png", binary_mask(8, 8, (0, 2, 0, 2)))
    items = read_dataset(custom, layout="folders", image_dir="he", label_dir="truth")
    assert [Path(i["label"]).name for i in items] == ["x_gt.png"]
    with pytest.raises(ValueError, match="label folder"):
        ImageMaskFolderReader(image_dir="he", label_dir="nope").read(custom)


def test_generic_reports_unpaired_and_ambiguous(tmp_path: Path):
    root = tmp_path / "data"
    write_image(root / "images" / "a.png", rgb(8, 8))
    write_image(root / "images" / "a.tif", rgb(8, 8))
    write_image(root / "images" / "lonely.png", rgb(8, 8))
    write_image(root / "masks" / "a_mask.png", binary_mask(8, 8, (0, 2, 0, 2)))
    write_image(root / "masks" / "orphan_mask.png", binary_mask(8, 8, (0, 2, 0, 2)))
    with pytest.raises(DatasetError) as info:
        read_dataset(root)
    paths = [Path(p).name for p, _ in info.value.problems]
    assert sorted(paths) == ["a.png", "a.tif", "lonely.png", "orphan_mask.png"]
    assert "ambiguous image" in str(info.value)
    # skipping unpaired files does not hide the ambiguity
    with pytest.raises(DatasetError, match="ambiguous"):
        read_dataset(root, on_missing="skip")


def test_pair_by_stem_result_lists():
    images = [Path("/d/images/x.png"), Path("/d/images/y.png")]
    labels = [Path("/d/masks/x-mask.png"), Path("/d/masks/z.png")]
    result = pair_by_stem(images, labels)
    assert result.pairs == [(images[0], labels[0])]
    assert result.unpaired_images == [images[1]] and result.unpaired_labels == [labels[1]]


def test_pairing_drops_leading_role_words_as_in_btcv():
    images = [Path("/d/img/img0001.png"), Path("/d/img/img0002.tif"), Path("/d/i/segment01.png")]
    labels = [Path("/d/label/label0001.png"), Path("/d/label/label0002_seg.png"), Path("/d/l/segment01.png")]
    result = pair_by_stem(images, labels)
    assert sorted(result.pairs) == sorted(zip(images, labels))  # "segment01" is a name, not the role word "seg"
    assert label_key("mask_07") == "07" and label_key("Labels-3_mask") == "3" and label_key("label") == "label"
    assert image_key_candidates("IMG_0007") == ["img_0007", "0007"] and image_key_candidates("imaging") == ["imaging"]
    # a plain name still wins over the stripped one, and two labels sharing a key stay ambiguous
    both = pair_by_stem([Path("0001.png")], [Path("label0001.png"), Path("mask0001.png")])
    assert not both.pairs and len(both.ambiguous) == 2


def test_mitosis_reader_is_named_not_detected(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "mitosis"
    write_image(root / "images" / "slide.png", rgb(12, 16))
    write_image(root / "labels" / "slide.png", binary_mask(12, 16, (1, 3, 1, 3)))
    assert find_reader(root).name == "folders"
    with caplog.at_level("INFO"):
        items = read_dataset(root, layout="mitosis")
    assert items == read_dataset(root)
    assert "not 1720x1280" in caplog.text
    with pytest.raises(ValueError, match="expected_size"):
        MitosisReader(expected_size=(0, 5))


def test_unknown_layouts_and_roots(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no known data set layout") as info:
        find_reader(tmp_path / "empty")
    assert all(name in str(info.value) for name in list_readers())
    with pytest.raises(ValueError, match="unknown dataset layout 'kaggle'"):
        read_dataset(tmp_path / "empty", layout="kaggle")
    with pytest.raises(ValueError, match="not a folder"):
        read_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="on_missing"):
        read_dataset(tmp_path / "empty", layout="folders", on_missing="ignore")


def test_monai_loads_tiff_image_and_cached_mask_in_the_same_orientation(monuseg_root: Path, tmp_path: Path):
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    item = read_dataset(monuseg_root, cache_dir=tmp_path / "c")[0]
    loaded = EnsureChannelFirstd(["image", "label"])(LoadImaged(["image", "label"])(item))
    # MONAI indexes 2D images (x, y): the 24x20 (width x height) tile loads as (C, 24, 20), via ITK for the TIFF
    # and PIL for the PNG mask alike
    assert tuple(loaded["image"].shape) == (3, 24, 20) and tuple(loaded["label"].shape) == (1, 24, 20)
    label = loaded["label"][0].numpy()
    assert label[23, 14] == 3 and label[19, 14] == 0  # polygon 3 reaches the right edge x = 23 at y = 14
    raw = np.asarray(Image.open(item["image"]))
    np.testing.assert_array_equal(loaded["image"][:, 5, 3].numpy(), raw[3, 5])


def test_read_only_root_caches_in_user_cache(monuseg_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from attnseg_monai.data import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache, "_writable", lambda folder: False)  # as for a read-only mount (tests run as root)
    before = snapshot(monuseg_root)
    items = read_dataset(monuseg_root)
    assert snapshot(monuseg_root) == before
    assert all(Path(i["label"]).is_relative_to(tmp_path / "xdg" / "attnseg_monai") for i in items)
