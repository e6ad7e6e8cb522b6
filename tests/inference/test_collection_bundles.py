"""Every bundle of the collection through the predictor (tiny networks from tests/bundles/cases): outputs named and
shaped as the bundle's own inference writes them, in the input's geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from attnseg_monai.bundle import list_bundles
from attnseg_monai.inference import BundlePredictor, load_bundle
from attnseg_monai.inference.eval_task import task_from_bundle
from tests.bundles.cases import BUNDLE_CASES

from .helpers import OBLIQUE_AFFINE, QUIET, UNTRAINED, calibrated_state_dict, ct_volume

BUNDLES = [name for name in list_bundles() if name in BUNDLE_CASES]


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_outputs_keep_the_input_geometry(name, tmp_path):
    case = BUNDLE_CASES[name]
    overrides = {**case["net"], **case["infer"]}
    torch.manual_seed(0)
    parts = load_bundle(name, load_weights=False, checkpoint=UNTRAINED, overrides=overrides)
    ckpt = tmp_path / "model.pt"
    torch.save(
        calibrated_state_dict(parts.network, parts.in_channels) if case["inputs"] else parts.network.state_dict(), ckpt
    )
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    expected: dict[str, tuple] = {}
    if case["inputs"]:
        for i, (h, w, c, ext) in enumerate(case["inputs"]):
            pixels = rng.integers(0, 255, size=(h, w, c) if c > 1 else (h, w), dtype=np.uint8)
            Image.fromarray(pixels).save(inputs / f"case{i}{ext}")
            expected[f"case{i}"] = (w, h)
    else:  # 3D bundles: one oblique NIfTI volume
        channels = parts.in_channels
        vol = ct_volume((40, 36, 12))
        data = vol if channels == 1 else np.repeat(vol[..., None], channels, -1)
        nib.save(nib.Nifti1Image(data, OBLIQUE_AFFINE), inputs / "case0.nii.gz")
        expected["case0"] = vol.shape
    predictor = BundlePredictor(device="cpu")
    predictor.from_bundle(name, checkpoint=ckpt, overrides=overrides)
    summary = predictor.predict_files(inputs, tmp_path / "out", save_overlays=True, **QUIET)
    assert summary.ok, summary.failed
    assert sorted(summary.written) == sorted(expected)
    for stem, size in expected.items():
        for postfix in case["outputs"]:
            # NIfTI cases name their postfix as Path.stem sees it ("seg.nii" for "<case>_seg.nii.gz")
            name_postfix = postfix.removesuffix(".nii") if case["output_ext"] == ".nii.gz" else postfix
            path = tmp_path / "out" / f"{stem}_{name_postfix}{case['output_ext']}"
            if case["output_ext"] == ".png":
                image = Image.open(path)
                assert image.size == size, (path.name, image.size, size)
                values = np.asarray(image)
            else:
                img = nib.load(path)
                assert img.shape[:3] == size
                np.testing.assert_allclose(img.affine, OBLIQUE_AFFINE, atol=1e-4)
                values = np.asarray(img.dataobj)
            assert values.max() <= case["max_label"].get(postfix, np.inf)
        assert (tmp_path / "out" / f"{stem}_overlay.png").is_file()
    task = task_from_bundle(name)
    assert task.pred_postfix in {p.removesuffix(".nii") for p in case["outputs"]}


@pytest.mark.parametrize("name", BUNDLES)
def test_same_pixels_as_the_bundles_own_inference(name, tmp_path):
    """The predictor reuses the bundle's pieces: its files hold exactly what ``monai.bundle run`` writes."""
    import shutil

    from monai.bundle import ConfigWorkflow

    from attnseg_monai.bundle import BUNDLES_DIR

    case = BUNDLE_CASES[name]
    if case["output_ext"] != ".png":
        pytest.skip("2D bundles only: 3D bundles are compared by their own tests")
    inputs = tmp_path / "in"
    inputs.mkdir()
    h, w, c, ext = case["inputs"][0]
    pixels = np.random.default_rng(1).integers(0, 255, size=(h, w, c) if c > 1 else (h, w), dtype=np.uint8)
    pixels[: h // 2] //= 5  # a dark upper half: the outputs differ between top and bottom
    Image.fromarray(pixels).save(inputs / f"img{ext}")
    root = tmp_path / name
    shutil.copytree(BUNDLES_DIR / name, root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    overrides = {**case["net"], **case["infer"], "dataset_dir": str(inputs)}
    torch.manual_seed(0)
    parts = load_bundle(name, load_weights=False, checkpoint=UNTRAINED, overrides=overrides)
    (root / "models").mkdir()
    torch.save(calibrated_state_dict(parts.network, parts.in_channels), root / "models" / "model.pt")
    workflow = ConfigWorkflow(
        config_file=str(root / "configs" / "inference.json"),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        run_id="run",
        bundle_root=str(root),
        output_dir=str(tmp_path / "bundle_out"),
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    predictor = BundlePredictor(device="cpu")
    predictor.from_bundle(name, checkpoint=root / "models" / "model.pt", overrides=overrides)
    assert predictor.predict_files(inputs, tmp_path / "out", **QUIET).ok
    for postfix in case["outputs"]:
        ours = np.asarray(Image.open(tmp_path / "out" / f"img_{postfix}.png"))
        theirs = np.asarray(Image.open(tmp_path / "bundle_out" / f"img_{postfix}.png"))
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape == (h, w)
        np.testing.assert_array_equal(ours, theirs)
        if postfix != "instances":
            assert len(np.unique(ours)) > 1, "a constant output would hide a transposition"
            assert ours[: h // 2].mean() != ours[h // 2 :].mean()


@pytest.mark.skipif("danie" not in list_bundles(), reason="the danie bundle is not in this checkout")
def test_bundle_with_its_own_loader_and_a_slice_wise_inferer(tmp_path):
    """DANIE loads files with its own transform (HU window, TransUNet npz) and runs a 2D network slice by slice."""
    case = BUNDLE_CASES.get("danie")
    overrides = (
        {**case["net"], **case["infer"]}
        if case
        else {
            "preset": {"embed_dims": [8, 16, 24], "depths": [1, 1, 1], "num_heads": [1, 2, 3]},
            "slice_size": [32, 32],
        }
    )
    torch.manual_seed(0)
    parts = load_bundle("danie", load_weights=False, checkpoint=UNTRAINED, overrides=overrides)
    assert parts.custom_loader is not None and parts.input_dims == 3 and parts.spatial_dims == 2
    torch.save(parts.network.state_dict(), tmp_path / "model.pt")
    (tmp_path / "in").mkdir()
    vol = ct_volume((40, 36, 6))
    nib.save(nib.Nifti1Image(vol, OBLIQUE_AFFINE), tmp_path / "in" / "img0001.nii.gz")
    np.savez(tmp_path / "in" / "case0005_slice000.npz", image=np.random.rand(48, 48).astype(np.float32), label=0)
    (tmp_path / "in" / "empty.nii.gz").write_bytes(b"")
    predictor = BundlePredictor(device="cpu")
    predictor.from_bundle("danie", checkpoint=tmp_path / "model.pt", overrides=overrides)
    summary = predictor.predict_files(tmp_path / "in", tmp_path / "out", save_probabilities=True, **QUIET)
    assert sorted(summary.written) == ["case0005_slice000", "img0001"]
    assert [f["case"] for f in summary.failed] == ["empty"] and "empty file" in summary.failed[0]["error"]
    seg = nib.load(tmp_path / "out" / "img0001_seg.nii.gz")
    assert seg.shape == vol.shape
    np.testing.assert_allclose(seg.affine, OBLIQUE_AFFINE, atol=1e-4)
    probs = nib.load(tmp_path / "out" / "img0001_probabilities.nii.gz")
    assert probs.shape == (*vol.shape, parts.out_channels)
    assert nib.load(tmp_path / "out" / "case0005_slice000_seg.nii.gz").shape == (48, 48, 1)
