"""Extreme but valid inputs through the batch predictor: handled (output on the input's grid) or refused clearly."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from attnseg_monai.inference import BundlePredictor, load_bundle
from tests.inference.helpers import HANNET_OVERRIDES, QUIET, UNTRAINED, write_3d_bundle


def test_2d_extremes(tmp_path: Path):
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(rng.integers(0, 65535, (40, 48), dtype=np.uint16)).save(inputs / "png16.png")
    Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(inputs / "grey.png")
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(inputs / "small.png")  # < 64 window
    Image.fromarray(rng.integers(0, 255, (1, 200, 3), dtype=np.uint8)).save(inputs / "one_row.png")
    Image.fromarray(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8)).save(inputs / "one_pixel.png")
    torch.manual_seed(0)
    parts = load_bundle("hannet", load_weights=False, checkpoint=UNTRAINED, overrides=HANNET_OVERRIDES)
    torch.save(parts.network.state_dict(), tmp_path / "h.pt")
    predictor = BundlePredictor(device="cpu")
    predictor.from_bundle("hannet", checkpoint=tmp_path / "h.pt", overrides=HANNET_OVERRIDES)
    summary = predictor.predict_files(str(inputs), str(tmp_path / "out"), **QUIET)
    failed = {f["case"]: f["error"] for f in summary.failed}
    # a 16-bit grey PNG and an 8-bit grey PNG given to an RGB bundle: refused, saying so
    assert "grey image (1 channel) but the bundle expects 3 channels" in failed.pop("png16")
    assert "grey image (1 channel) but the bundle expects 3 channels" in failed.pop("grey")
    assert not failed, failed
    assert sorted(summary.written) == ["one_pixel", "one_row", "small"]
    for case, (h, w) in {"small": (20, 30), "one_row": (1, 200), "one_pixel": (1, 1)}.items():
        for postfix in ("instances", "classes"):
            assert np.asarray(Image.open(tmp_path / "out" / f"{case}_{postfix}.png")).shape == (h, w)


def test_3d_extremes_thin_volumes_and_non_finite_values(tmp_path: Path):
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shapes = {"thin_z": (16, 16, 1), "thin_x": (1, 16, 16), "thin_y": (16, 1, 16)}
    for name, shape in shapes.items():
        nib.save(nib.Nifti1Image((rng.random(shape) * 1000).astype(np.float32), np.eye(4)), inputs / f"{name}.nii.gz")
    nan = (rng.random((16, 16, 8)) * 1000).astype(np.float32)
    nan[3:5, 3:5, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), inputs / "nan.nii.gz")
    inf = (rng.random((16, 16, 8)) * 1000).astype(np.float32)
    inf[0, 0, 0] = np.inf  # clipped by the bundle's intensity window: finite after preprocessing
    nib.save(nib.Nifti1Image(inf, np.eye(4)), inputs / "inf.nii.gz")
    root = write_3d_bundle(tmp_path / "ct")
    torch.manual_seed(0)
    parts = load_bundle(root, trust_bundle=True, load_weights=False)
    torch.save(parts.network.state_dict(), tmp_path / "c.pt")
    predictor = BundlePredictor(device="cpu")
    predictor.from_bundle(root, checkpoint=tmp_path / "c.pt", trust_bundle=True)
    summary = predictor.predict_files(str(inputs), str(tmp_path / "out"), **QUIET)
    failed = {f["case"]: f["error"] for f in summary.failed}
    assert set(failed) == {"nan"}, failed
    assert "NaN or infinite value" in failed["nan"] and "replace them" in failed["nan"]
    assert not list((tmp_path / "out").glob("nan_*"))
    for name, shape in {**shapes, "inf": (16, 16, 8)}.items():
        assert nib.load(tmp_path / "out" / f"{name}_seg.nii.gz").shape == shape, name
