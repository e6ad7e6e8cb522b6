"""Test-time augmentation, model ensembles and uncertainty maps in ``attnseg infer``, and ``attnseg rank``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from attnseg_monai.bundle import BUNDLES_DIR, RecordSpec, record_path, training_augmentation
from attnseg_monai.cli import main
from attnseg_monai.inference import MANIFEST_NAME, BundlePredictor
from attnseg_monai.inference.errors import CheckpointError
from attnseg_monai.inference.members import fold_checkpoints
from attnseg_monai.inference.rank import rank_cases
from attnseg_monai.inferers import ProbabilityEnsemble, entropy, tta_transforms
from attnseg_monai.inferers.ensemble import trained_symmetries

from .helpers import HANNET_OVERRIDES, QUIET, save_tiny_hannet_checkpoint, write_png


@pytest.fixture(scope="module")
def second_checkpoint(tmp_path_factory) -> Path:
    """Another tiny hannet (other weights, same width)."""
    torch.manual_seed(1)
    return save_tiny_hannet_checkpoint(tmp_path_factory.mktemp("second") / "hannet_other.pt")


@pytest.mark.parametrize(("dims", "rotations", "count"), [(2, False, 4), (3, False, 8), (2, True, 16)])
def test_tta_transforms_are_the_mirrorings_and_invert_exactly(dims, rotations, count):
    augs = tta_transforms(dims, rotations=rotations)
    assert len(augs) == count and len({a.name for a in augs}) == count
    x = torch.rand(2, 3, *([6] * dims))
    for aug in augs:
        assert torch.equal(aug.invert(aug.apply(x)), x), aug.name
    assert [a.flip for a in tta_transforms(3, axes=[2])] == [(), (2,)]


def test_tta_axes_that_do_not_exist_are_refused():
    with pytest.raises(ValueError, match="do not fit 2D"):
        tta_transforms(2, axes=[2])
    with pytest.raises(ValueError, match="do not fit 3D"):
        tta_transforms(3, axes=[0, 0])
    with pytest.raises(ValueError, match="rotations"):
        tta_transforms(3, rotations=True)


def test_ensemble_output_is_the_log_of_the_mean_probabilities():
    torch.manual_seed(0)
    members = [nn.Conv2d(2, 3, 3, padding=1) for _ in range(2)]
    augs = tta_transforms(2)
    ens = ProbabilityEnsemble(members, augs, expected_entropy=True)
    x = torch.rand(1, 2, 8, 8)
    with torch.no_grad():
        out = ens(x)
        samples = [a.invert(torch.softmax(m(a.apply(x)), 1)) for m in members for a in augs]
    mean = torch.stack(samples).mean(0)
    assert out.shape == (1, 4, 8, 8) and ens.samples == 8
    torch.testing.assert_close(torch.softmax(out[:, :3], 1), mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out[:, 3:], torch.stack([entropy(p) for p in samples]).mean(0), atol=1e-6, rtol=1e-5)
    h = entropy(mean)
    assert float(h.min()) >= 0 and float(h.max()) <= 1 and bool((h - out[:, 3:] >= -1e-6).all())  # MI >= 0
    assert math.isclose(float(entropy(torch.full((1, 3, 1, 1), 1 / 3))), 1.0, rel_tol=1e-6)


def test_an_ensemble_of_twins_equals_the_single_model(hannet_checkpoint):
    image = np.random.default_rng(0).random((3, 64, 48)).astype(np.float32) * 255
    twin = BundlePredictor(device="cpu", precision="fp32")
    twin.from_bundle("hannet", checkpoint=[hannet_checkpoint, hannet_checkpoint], overrides=HANNET_OVERRIDES)
    one = BundlePredictor(device="cpu", precision="fp32").from_bundle(
        "hannet", checkpoint=hannet_checkpoint, overrides=HANNET_OVERRIDES
    )
    a, b = twin.predict_array(image, save_probabilities=True), one.predict_array(image, save_probabilities=True)
    assert len(twin.members) == 2 and np.array_equal(a["classes"], b["classes"])
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-5)


def test_tta_and_ensemble_write_uncertainty_maps_and_scores(hannet_checkpoint, second_checkpoint, tmp_path):
    write_png(tmp_path / "in" / "a.png", 40, 48, seed=1)
    write_png(tmp_path / "in" / "b.png", 32, 36, seed=2)
    predictor = BundlePredictor(device="cpu", tta=True)
    predictor.from_bundle("hannet", checkpoint=f"{hannet_checkpoint},{second_checkpoint}", overrides=HANNET_OVERRIDES)
    out = tmp_path / "out"
    summary = predictor.predict_files(tmp_path / "in", out, save_uncertainty=True, **QUIET)
    assert summary.ok, summary.failed
    entropy_map = tifffile.imread(out / "a_entropy.tif")
    mutual = tifffile.imread(out / "a_mutual_information.tif")
    assert entropy_map.shape == mutual.shape == (40, 48) and entropy_map.dtype == np.float32
    assert 0 <= entropy_map.min() and entropy_map.max() <= 1 + 1e-6
    assert mutual.min() >= 0 and bool((mutual <= entropy_map + 1e-5).all())
    cases = json.loads((out / MANIFEST_NAME).read_text())["cases"]
    for case in ("a", "b"):
        scores = cases[case]["uncertainty"]
        assert set(scores) == {"entropy", "mutual_information"} and 0 <= scores["mutual_information"] <= 1
        assert cases[case]["settings"]["members"] == 2 and len(cases[case]["settings"]["tta"]) == 4
    ranked = rank_cases(out)
    assert [r["rank"] for r in ranked] == [1, 2] and ranked[0]["score"] >= ranked[1]["score"]
    # a rerun with the same settings has everything: nothing is redone
    again = predictor.predict_files(tmp_path / "in", out, save_uncertainty=True, **QUIET)
    assert again.written == [] and sorted(again.skipped) == ["a", "b"]


def test_rank_refuses_folders_without_scores(make_predictor, tmp_path):
    write_png(tmp_path / "in" / "a.png", 24, 24)
    make_predictor().predict_files(tmp_path / "in", tmp_path / "plain", **QUIET)
    with pytest.raises(ValueError, match="save_uncertainty"):
        rank_cases(tmp_path / "plain")
    make_predictor().predict_files(tmp_path / "in", tmp_path / "single", save_uncertainty=True, **QUIET)
    assert rank_cases(tmp_path / "single")[0]["case"] == "a"
    with pytest.raises(ValueError, match="mutual_information"):  # one model, no TTA: no disagreement to measure
        rank_cases(tmp_path / "single", by="mutual_information")
    with pytest.raises(ValueError, match="manifest"):
        rank_cases(tmp_path / "in")


def test_bad_ensembles_fail_before_any_output(hannet_checkpoint, tmp_path):
    write_png(tmp_path / "in" / "a.png", 24, 24)
    with pytest.raises(ValueError, match="do not fit 2D"):  # hannet is 2D: there is no third axis to mirror
        BundlePredictor(device="cpu", tta=True, tta_axes=[2]).from_bundle(
            "hannet", checkpoint=hannet_checkpoint, overrides=HANNET_OVERRIDES
        )
    # a member whose record names other classes
    other = tmp_path / "other.pt"
    other.write_bytes(Path(hannet_checkpoint).read_bytes())
    record = RecordSpec("hannet", BUNDLES_DIR / "hannet").record_for(
        BundlePredictor(device="cpu").from_bundle("hannet", checkpoint=other, overrides=HANNET_OVERRIDES).parts.network
    )
    record.classes = {"0": "background", "1": "tumour"}
    record.write(record_path(other))
    with pytest.raises(ValueError, match="classes|channel_def"):
        BundlePredictor(device="cpu").from_bundle(
            "hannet", checkpoint=[hannet_checkpoint, other], overrides=HANNET_OVERRIDES
        )
    # fold folders: none, or one without its model
    models = tmp_path / "bundle" / "models"
    models.mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no fold_<k>"):
        fold_checkpoints(tmp_path / "bundle", "all")
    (models / "fold_0").mkdir()
    (models / "fold_1").mkdir()
    (models / "fold_0" / "model.pt").write_bytes(Path(hannet_checkpoint).read_bytes())
    with pytest.raises(CheckpointError, match="fold_1: no model.pt"):
        fold_checkpoints(tmp_path / "bundle", "all")
    assert fold_checkpoints(tmp_path / "bundle", "0") == [models / "fold_0" / "model.pt"]
    assert not (tmp_path / "out").exists()


def test_cli_tta_uncertainty_then_rank(hannet_checkpoint, tmp_path, capsys):
    write_png(tmp_path / "in" / "a.png", 32, 32, seed=3)
    args = ["infer", "hannet", str(tmp_path / "in"), str(tmp_path / "out"), "--checkpoint", str(hannet_checkpoint)]
    args += ["--overrides", json.dumps(HANNET_OVERRIDES), "--device", "cpu", "--num_workers", "0", "--noprogress"]
    assert main([*args, "--tta", "--tta_axes", "0", "--save_uncertainty"]) == 0
    assert (tmp_path / "out" / "a_mutual_information.tif").is_file()
    capsys.readouterr()
    assert main(["rank", str(tmp_path / "out"), "--by", "mutual_information", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["case"] == "a" and rows[0]["score"] == rows[0]["mutual_information"]
    assert main([*args, "--tta_axes", "0"]) == 2  # axes without --tta: refused


def _with_augmentation(source: Path, dest: Path, augmentation: dict | None) -> Path:
    """A copy of a tiny hannet checkpoint whose record says how training flipped and turned (None: no record)."""
    dest.write_bytes(Path(source).read_bytes())
    if augmentation is not None:
        net = BundlePredictor(device="cpu").from_bundle("hannet", checkpoint=source, overrides=HANNET_OVERRIDES)
        record = RecordSpec("hannet", BUNDLES_DIR / "hannet").record_for(net.parts.network)
        record.augmentation = augmentation
        record.write(record_path(dest))
    return dest


def test_training_augmentation_is_recorded_from_the_bundles_transforms():
    from monai.bundle import ConfigParser

    found = {}
    for name in ("hannet", "mcsa_unet", "focal_attn_unet", "attention_unet", "danie"):
        parser = ConfigParser()
        parser.read_config(str(BUNDLES_DIR / name / "configs" / "train.json"))
        parser["bundle_root"] = str(BUNDLES_DIR / name)
        found[name] = training_augmentation(parser.get_parsed_content("train#preprocessing", instantiate=True))
    assert found["hannet"] == {"flip_axes": [0, 1], "rot90_planes": [[0, 1]]}
    assert found["attention_unet"] == {"flip_axes": [0, 1]}  # never z
    assert found["focal_attn_unet"] == {"flip_axes": []}  # chest X-rays are not mirrored
    assert found["danie"] == {"flip_axes": []}  # the quick recipe's rot_flip_prob is 0 (paper.json: 0.5)
    assert trained_symmetries(2, found["mcsa_unet"]) == ((0, 1), True)  # x flips and quarter turns: y mirror too
    assert trained_symmetries(3, found["attention_unet"]) == ((0, 1), False)
    assert trained_symmetries(2, {"rot90_planes": [[0, 1]]}) == ((), True)  # turns alone never mirror
    assert trained_symmetries(3, {"flip_axes": "all"}) == ((0, 1, 2), False)


def test_tta_mirrors_the_axes_training_mirrored(hannet_checkpoint, tmp_path, caplog):
    only_x = _with_augmentation(hannet_checkpoint, tmp_path / "x.pt", {"flip_axes": [0]})
    predictor = BundlePredictor(device="cpu", tta=True).from_bundle(
        "hannet", checkpoint=only_x, overrides=HANNET_OVERRIDES
    )
    assert [a.name for a in predictor.augmentations] == ["identity", "flip0"]
    given = BundlePredictor(device="cpu", tta=True, tta_axes=[0, 1]).from_bundle(
        "hannet", checkpoint=only_x, overrides=HANNET_OVERRIDES
    )
    assert len(given.augmentations) == 4  # --tta_axes wins over the record
    # an ensemble mirrors what every member saw
    both = _with_augmentation(hannet_checkpoint, tmp_path / "xy.pt", {"flip_axes": [0, 1]})
    ensemble = BundlePredictor(device="cpu", tta=True).from_bundle(
        "hannet", checkpoint=[both, only_x], overrides=HANNET_OVERRIDES
    )
    assert [a.name for a in ensemble.augmentations] == ["identity", "flip0"]
    # no mirroring in training: refused before any output, with the remedy
    none = _with_augmentation(hannet_checkpoint, tmp_path / "none.pt", {"flip_axes": []})
    with pytest.raises(ValueError, match="--tta_axes"):
        BundlePredictor(device="cpu", tta=True).from_bundle("hannet", checkpoint=none, overrides=HANNET_OVERRIDES)
    # a record that does not say: every axis, with a warning
    plain = _with_augmentation(hannet_checkpoint, tmp_path / "plain.pt", None)
    with caplog.at_level("WARNING"):
        unknown = BundlePredictor(device="cpu", tta=True).from_bundle(
            "hannet", checkpoint=plain, overrides=HANNET_OVERRIDES
        )
    assert len(unknown.augmentations) == 4 and "does not say which axes" in caplog.text
