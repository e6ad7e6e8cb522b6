"""Embedded sample data: the vendored real nuclei image, determinism, no-overwrite behaviour, MONAI loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import LoadImage
from PIL import Image

from attnseg_monai.data import (
    MANIFEST_NAME,
    DatasetError,
    load_nuclei_asset,
    make_chest_xray_sample,
    make_mitosis_sample,
    make_nuclei_sample,
    read_dataset,
    validate_pairs,
    verify_sample,
)
from attnseg_monai.data import samples as samples_module
from attnseg_monai.io.atomic import sha256_file

from .conftest import snapshot


def _pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_vendored_nuclei_sample_is_the_real_annotated_image():
    image, mask = load_nuclei_asset()
    assert image.shape == mask.shape == (512, 512)
    assert image.dtype == mask.dtype == np.uint16
    ids = np.unique(mask)
    assert len(ids[ids > 0]) == 125  # 125 hand-annotated nuclei, as the design notes say
    assert image.max() <= 255 and image.std() > 10
    # nuclei are bright on a dark background (fluorescence): the annotated pixels are brighter on average
    assert image[mask > 0].mean() > 2 * image[mask == 0].mean()
    licence = samples_module.NUCLEI_ASSET_LICENSE.read_text()
    assert "BBBC038" in licence and "CC0" in licence and "BSD 3-Clause" in licence


def test_nuclei_sample_layout_and_content(tmp_path: Path):
    items = make_nuclei_sample(tmp_path / "nuclei", num_tiles=3)
    assert [Path(i["image"]).name for i in items] == [
        "bbbc038_img2d.png",
        "he_tile_000.png",
        "he_tile_001.png",
        "he_tile_002.png",
    ]
    infos = validate_pairs(items, expected_channels=3)
    assert infos[0].size == (512, 512) and infos[1].size == (256, 256)
    assert infos[0].label_values == tuple(range(126))  # renumbered 1..125
    real_image, real_mask = load_nuclei_asset()
    rgb = _pixels(items[0]["image"])
    assert rgb.shape == (512, 512, 3)
    np.testing.assert_array_equal(rgb[..., 1], real_image.astype(np.uint8))
    np.testing.assert_array_equal(_pixels(items[0]["label"]) > 0, real_mask > 0)
    for item in items[1:]:
        inst = _pixels(item["label"])
        assert inst.dtype == np.uint16 and len(np.unique(inst)) > 15
        tile = _pixels(item["image"]).astype(float)
        # nuclei are darker and bluer (haematoxylin) than the pink background
        assert tile[inst > 0].mean() < tile[inst == 0].mean()
        assert tile[inst > 0][:, 2].mean() > tile[inst > 0][:, 0].mean()
    assert (tmp_path / "nuclei" / "LICENSE-nuclei-sample.txt").is_file()
    assert read_dataset(tmp_path / "nuclei") == items  # the sample is a generic images/labels data set


def test_generators_are_deterministic(tmp_path: Path):
    for maker, kwargs in [
        (make_nuclei_sample, {"num_tiles": 2, "include_real": False, "tile_size": 64}),
        (make_chest_xray_sample, {"num_images": 2, "size": 64}),
        (make_mitosis_sample, {"num_slides": 1, "width": 200, "height": 150}),
    ]:
        a = maker(tmp_path / f"{maker.__name__}_a", **kwargs)
        b = maker(tmp_path / f"{maker.__name__}_b", **kwargs)
        assert maker(tmp_path / f"{maker.__name__}_a", **kwargs) == a
        for item_a, item_b in zip(a, b, strict=True):
            for key in ("image", "label"):
                assert Path(item_a[key]).read_bytes() == Path(item_b[key]).read_bytes()
        manifest_a = json.loads((tmp_path / f"{maker.__name__}_a" / MANIFEST_NAME).read_text())
        manifest_b = json.loads((tmp_path / f"{maker.__name__}_b" / MANIFEST_NAME).read_text())
        assert manifest_a["files"] == manifest_b["files"]
        assert all("pixels_sha256" in entry for entry in manifest_a["files"].values())
    other_seed = make_chest_xray_sample(tmp_path / "seed1", num_images=2, size=64, seed=1)
    first = make_chest_xray_sample(tmp_path / "make_chest_xray_sample_a", num_images=2, size=64)
    assert Path(other_seed[0]["image"]).read_bytes() != Path(first[0]["image"]).read_bytes()
    # item i does not depend on how many items are made
    one = make_chest_xray_sample(tmp_path / "one", num_images=1, size=64)
    assert Path(one[0]["image"]).read_bytes() == Path(first[0]["image"]).read_bytes()


def test_complete_sample_is_not_regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "cxr"
    items = make_chest_xray_sample(out, num_images=2, size=64)
    assert verify_sample(out)

    def must_not_render(*args, **kwargs):
        raise AssertionError("a complete sample was generated again")

    monkeypatch.setattr(samples_module, "render_chest_xray", must_not_render)
    assert make_chest_xray_sample(out, num_images=2, size=64) == items


def test_changed_files_are_never_overwritten(tmp_path: Path):
    out = tmp_path / "cxr"
    items = make_chest_xray_sample(out, num_images=2, size=64)
    edited = Path(items[1]["label"])
    edited.write_bytes(b"the user's own annotation")
    with pytest.raises(DatasetError) as info:
        make_chest_xray_sample(out, num_images=2, size=64)
    assert [p for p, _ in info.value.problems] == [str(edited)]
    assert "left unchanged" in str(info.value)
    assert edited.read_bytes() == b"the user's own annotation"
    assert not verify_sample(out)


def test_foreign_files_in_target_are_kept(tmp_path: Path):
    out = tmp_path / "cxr"
    foreign = out / "images" / "cxr_000.png"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"not ours")
    unrelated = out / "notes.txt"
    unrelated.write_text("keep me")
    with pytest.raises(DatasetError, match="cxr_000.png: exists and differs"):
        make_chest_xray_sample(out, num_images=2, size=64)
    assert foreign.read_bytes() == b"not ours" and unrelated.read_text() == "keep me"
    assert not (out / MANIFEST_NAME).exists()


def test_identical_files_without_manifest_are_adopted_and_stale_ones_removed(tmp_path: Path):
    out = tmp_path / "cxr"
    items = make_chest_xray_sample(out, num_images=3, size=64)
    (out / MANIFEST_NAME).unlink()
    before = snapshot(out)
    assert make_chest_xray_sample(out, num_images=3, size=64) == items  # same bytes: accepted, manifest rewritten
    after = snapshot(out)
    assert after.pop(MANIFEST_NAME) and after == before
    fewer = make_chest_xray_sample(out, num_images=2, size=64)
    assert fewer == items[:2]
    assert not Path(items[2]["image"]).exists()  # our unchanged file from the larger run is gone
    assert verify_sample(out) and len(read_dataset(out)) == 2


def test_full_size_mitosis_slides(mitosis_sample: tuple[Path, list[dict[str, str]]]):
    out, items = mitosis_sample
    infos = validate_pairs(items, expected_channels=3, label_values={0, 255})
    assert all(info.size == (1720, 1280) for info in infos)
    for item in items:
        label = _pixels(item["label"])
        rgb = _pixels(item["image"]).astype(float)
        assert label.shape == (1280, 1720) and 0 < np.count_nonzero(label) < 0.01 * label.size  # rare figures
        # mitotic figures are the darkest structures: darker than the average of all other pixels by far
        assert rgb[label > 0].mean() < 0.6 * rgb[label == 0].mean()
    assert len({sha256_file(i["image"]) for i in items}) == len(items)  # every slide differs
    # MONAI's PILReader reverses the axes: (C, W, H); image and label agree, which is what matters
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    assert tuple(loader(items[0]["image"]).shape) == (3, 1720, 1280)
    assert tuple(loader(items[0]["label"]).shape) == (1, 1720, 1280)
    assert verify_sample(out)


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="num_slides"):
        make_mitosis_sample(tmp_path, num_slides=0)
    with pytest.raises(ValueError, match="size"):
        make_chest_xray_sample(tmp_path, size=16)
    with pytest.raises(ValueError, match="nothing to make"):
        make_nuclei_sample(tmp_path, num_tiles=0, include_real=False)
