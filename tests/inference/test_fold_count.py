"""``attnseg train-folds --folds K`` refuses K above the folds of the bundle's training datalist before any fold
trains (danie's embedded sample has 4 training volumes, so 4 folds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnseg_monai.cli import main
from attnseg_monai.inference.folds import folds_in_datalist, train_folds
from tests.bundles.helpers import copy_bundle


def _no_fold_folders(root: Path) -> bool:
    return not list(root.glob("models/fold_*")) and not list(root.glob("eval/fold_*"))


def test_more_folds_than_the_datalist_holds_stop_before_training(tmp_path: Path, caplog):
    root = copy_bundle("danie", tmp_path)
    assert folds_in_datalist(root, None, {}) == [0, 1, 2, 3]
    with pytest.raises(
        ValueError, match=r"holds folds \[0, 1, 2, 3\], so --folds 5 cannot train fold 4: pass --folds 4"
    ):
        train_folds(root, 5, trust_bundle=True, progress=False)
    assert _no_fold_folders(root)

    # the same through the command line: a failing exit code and the message, nothing trained
    assert main(["train-folds", str(root), "--folds", "6", "--trust_bundle", "--noprogress"]) != 0
    assert "cannot train folds 4, 5: pass --folds 4" in caplog.text and "Nothing was trained" in caplog.text
    assert _no_fold_folders(root)


def test_a_datalist_too_small_for_the_folds_is_reported_by_the_split(tmp_path: Path):
    # three labelled tiles: one is held out, two cannot fill the bundle's 5 folds; the split refuses them, named
    root = copy_bundle("hannet", tmp_path / "bundle")
    data = tmp_path / "nuclei"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data / "images" / f"t{k}.png")
        label = np.zeros((64, 64), np.uint16)
        label[10:20, 10:20] = 1
        Image.fromarray(label).save(data / "labels" / f"t{k}.png")
    with pytest.raises(
        ValueError, match=r"training datalist of .*nuclei cannot be built \(2 training items cannot fill 5 folds"
    ):
        train_folds(root, 2, dataset_dir=data, trust_bundle=True, progress=False)
    assert _no_fold_folders(root)
