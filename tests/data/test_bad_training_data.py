"""Bad training data is reported file by file before the first epoch (pre-flight validation of every pair)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnseg_monai.bundle import BUNDLES_DIR, prepare_datalist
from attnseg_monai.data import DatasetError


def _bad_set(root: Path) -> dict[str, str]:
    """``images/`` + ``labels/`` with one good pair and one pair per fault; returns {file name: expected text}."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()

    def pair(name: str, label: np.ndarray, size: tuple[int, int] = (32, 32)) -> None:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(label).save(root / "labels" / f"{name}.png")

    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    for i in range(4):
        pair(f"good{i}", mask)
    pair("mismatched", np.zeros((20, 24), np.uint8) + mask[:20, :24])  # label 24x20, image 32x32
    pair("emptylabel", np.zeros((32, 32), np.uint8))
    wrong = mask.copy()
    wrong[0, 0] = 7
    pair("wrongvalues", wrong)
    pair("unreadable", mask)
    (root / "images" / "unreadable.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    pair("truncated", mask)
    data = (root / "labels" / "truncated.png").read_bytes()
    (root / "labels" / "truncated.png").write_bytes(data[: len(data) // 2])
    return {
        "mismatched.png": "label is 24x20 but its image mismatched.png is 32x32",
        "emptylabel.png": "label is empty",
        "wrongvalues.png": "unexpected label values [7]",
        "unreadable.png": "unreadable or corrupt",
        "truncated.png": "corrupt",
    }


def test_every_bad_file_is_named_in_one_report(tmp_path: Path):
    expected = _bad_set(tmp_path / "data")
    # nuclei (hannet): RGB images, instance labels (any ids), empty labels refused
    with pytest.raises(DatasetError) as info:
        prepare_datalist("nuclei", tmp_path / "data", tmp_path / "dl.json", embedded=False, layout="folders")
    text = str(info.value)
    for name, fragment in expected.items():
        if name in ("wrongvalues.png",):
            continue  # lung labels must be grey masks: checked with the mitosis rules below
        line = next((ln for ln in text.splitlines() if name in ln and fragment in ln), None)
        assert line is not None, f"{name}: '{fragment}' not in\n{text}"
    assert "good0.png" not in text
    with pytest.raises(DatasetError, match=r"wrongvalues.png: unexpected label values \[7\]"):
        prepare_datalist("mitosis", tmp_path / "data", tmp_path / "dl.json", embedded=False, layout="folders")
    assert not (tmp_path / "dl.json").exists()  # nothing written for a data set that failed


def test_bundle_training_stops_before_the_first_epoch(tmp_path: Path):
    from tests.handlers.train_bundle import run_training

    _bad_set(tmp_path / "data")
    log = tmp_path / "loss.txt"
    overrides = {
        "dataset_dir": str(tmp_path / "data"),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
        "network_def#features": [4, 8, 16, 32, 64],
    }
    with pytest.raises(Exception) as info:  # MONAI wraps it: RuntimeError("Failed to evaluate ...") from DatasetError
        run_training(BUNDLES_DIR / "hannet", log, overrides)
    cause = info.value
    while cause is not None and not isinstance(cause, DatasetError):
        cause = cause.__cause__
    assert isinstance(cause, DatasetError), info.value
    for name in ("emptylabel.png", "mismatched.png", "truncated.png", "unreadable.png"):
        assert name in str(cause)
    assert not log.exists() or not log.read_text()  # no iteration ran
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
