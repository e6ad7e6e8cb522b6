"""validate_pairs: every kind of problem is found, named with its file, and reported together in one error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnseg_monai.data import DatasetError, validate_pairs

from .conftest import binary_mask, rgb, write_image


def _good_pair(root: Path, stem: str, size: tuple[int, int] = (12, 16)) -> dict[str, str]:
    h, w = size
    image = write_image(root / "images" / f"{stem}.png", rgb(h, w))
    label = write_image(root / "masks" / f"{stem}.png", binary_mask(h, w, (2, 6, 2, 6)))
    return {"image": str(image), "label": str(label)}


def _problem_of(error: DatasetError, path: str) -> str:
    found = [message for p, message in error.problems if p == path]
    assert found, f"{path} not reported in:\n{error}"
    return " | ".join(found)


def test_valid_pairs_pass_and_report_facts(tmp_path: Path):
    items = [_good_pair(tmp_path, "a"), _good_pair(tmp_path, "b", (20, 8))]
    infos = validate_pairs(items, expected_channels=3, label_values={0, 255})
    assert [i.size for i in infos] == [(16, 12), (8, 20)]
    assert all(i.channels == 3 and i.label_values == (0, 255) for i in infos)


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("missing_label_entry", "missing label"),
        ("missing_file", "label file not found"),
        ("empty_file", "label file is empty (0 bytes)"),
        ("garbage_file", "label file is unreadable or corrupt"),
        ("truncated_label", "label file is corrupt"),
        ("rgba_label", "label has 4 channels"),
        ("size_mismatch", "label is 16x10 but its image"),
        ("empty_label", "label is empty (background only)"),
        ("bad_values", "unexpected label values [7] (allowed: [0, 255])"),
    ],
)
def test_each_label_problem_names_the_file(tmp_path: Path, breakage: str, expected: str):
    item = _good_pair(tmp_path, "case")
    label = Path(item["label"])
    if breakage == "missing_label_entry":
        item["label"] = ""
    elif breakage == "missing_file":
        label.unlink()
    elif breakage == "empty_file":
        label.write_bytes(b"")
    elif breakage == "garbage_file":
        label.write_bytes(b"this is not an image at all" * 10)
    elif breakage == "truncated_label":
        data = label.read_bytes()
        label.write_bytes(data[: len(data) // 2 + 10])
    elif breakage == "rgba_label":
        write_image(label, np.zeros((12, 16, 4), np.uint8))
    elif breakage == "size_mismatch":
        write_image(label, binary_mask(10, 16, (1, 4, 1, 4)))
    elif breakage == "empty_label":
        write_image(label, np.zeros((12, 16), np.uint8))
    elif breakage == "bad_values":
        write_image(label, binary_mask(12, 16, (1, 4, 1, 4)) | binary_mask(12, 16, (8, 9, 8, 9), 7))
    with pytest.raises(DatasetError) as info:
        validate_pairs([item], expected_channels=3, label_values={0, 255})
    reported = item["image"] if breakage == "missing_label_entry" else str(label)
    assert expected in _problem_of(info.value, reported)
    assert reported in str(info.value)


@pytest.mark.parametrize(
    "array, expected_channels, expected",
    [
        (np.zeros((12, 16, 4), np.uint8), 3, "image has 4 channel(s) (mode RGBA), expected 3: drop the alpha channel"),
        (np.zeros((12, 16), np.uint8), 3, "image has 1 channel(s) (mode L), expected 3: a grey image where RGB"),
        (np.zeros((12, 16, 3), np.uint8), 1, "image has 3 channel(s) (mode RGB), expected 1"),
    ],
)
def test_channel_problems(tmp_path: Path, array: np.ndarray, expected_channels: int, expected: str):
    item = _good_pair(tmp_path, "case")
    write_image(Path(item["image"]), array)
    with pytest.raises(DatasetError) as info:
        validate_pairs([item], expected_channels=expected_channels)
    assert expected in _problem_of(info.value, item["image"])


def test_corrupt_image_files(tmp_path: Path):
    truncated = _good_pair(tmp_path, "truncated")
    data = Path(truncated["image"]).read_bytes()
    Path(truncated["image"]).write_bytes(data[: len(data) - 30])
    jpeg = _good_pair(tmp_path, "jpeg", (96, 128))
    jpeg_path = write_image(tmp_path / "images" / "jpeg.jpg", rgb(12, 16).repeat(8, 0).repeat(8, 1))
    jpeg_bytes = jpeg_path.read_bytes()
    jpeg_path.write_bytes(jpeg_bytes[: len(jpeg_bytes) - 200])  # header intact, scan data cut
    jpeg["image"] = str(jpeg_path)
    with pytest.raises(DatasetError) as info:
        validate_pairs([truncated, jpeg], expected_channels=3, decode_images=True)
    assert "image file is corrupt" in _problem_of(info.value, truncated["image"])
    assert "image file is corrupt" in _problem_of(info.value, jpeg["image"])
    assert len(info.value.problems) == 2  # one line per broken file


def test_all_problems_are_collected_before_raising(tmp_path: Path):
    good = _good_pair(tmp_path, "good")
    missing = _good_pair(tmp_path, "missing")
    Path(missing["image"]).unlink()
    rgba = _good_pair(tmp_path, "rgba")
    write_image(Path(rgba["image"]), np.zeros((12, 16, 4), np.uint8))
    empty = _good_pair(tmp_path, "empty")
    write_image(Path(empty["label"]), np.zeros((12, 16), np.uint8))
    with pytest.raises(DatasetError) as info:
        validate_pairs([good, missing, rgba, empty], expected_channels=3)
    error = info.value
    assert isinstance(error, ValueError)
    assert str(error).startswith("3 problems in 4 image/label pairs:")
    assert {p for p, _ in error.problems} == {missing["image"], rgba["image"], empty["label"]}
    assert good["image"] not in str(error)


def test_options_relax_checks(tmp_path: Path):
    item = _good_pair(tmp_path, "case")
    write_image(Path(item["label"]), np.zeros((12, 16), np.uint8))
    assert validate_pairs([item], allow_empty_labels=True)[0].label_values == (0,)
    assert validate_pairs([item], check_labels=False)[0].label_values is None
    with pytest.raises(ValueError, match="expected_channels"):
        validate_pairs([item], expected_channels=5)
    with pytest.raises(DatasetError, match="empty"):
        validate_pairs([])


def test_instance_masks_and_tiffs(tmp_path: Path):
    image = write_image(tmp_path / "tile.tif", rgb(10, 12))
    mask = np.zeros((10, 12), np.uint16)
    mask[1:4, 1:4], mask[5:9, 6:10] = 1, 300
    label = write_image(tmp_path / "tile_mask.png", mask)
    (info,) = validate_pairs([{"image": str(image), "label": str(label)}], expected_channels=3)
    assert info.label_values == (0, 1, 300)
