"""BundlePredictor on the tiny hannet: broken inputs, geometry, resumption after crashes, overwrite rules."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnseg_monai.inference import MANIFEST_NAME, BundlePredictor
from attnseg_monai.io.atomic import TEMP_MARKER, sha256_file

from .helpers import HANNET_OVERRIDES, QUIET, rgb, write_broken_set, write_png


def _manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())


def _temps(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if TEMP_MARKER in p.name]


def test_broken_inputs_are_listed_and_the_batch_goes_on(make_predictor, tmp_path):
    expected = write_broken_set(tmp_path / "in")
    summary = make_predictor().predict_files(tmp_path / "in", tmp_path / "out", num_workers=1, progress=False)
    failed = {Path(f["input"]).name: f["error"] for f in summary.failed}
    broken = {name for name, reason in expected.items() if reason}
    assert set(failed) == broken
    for name, reason in expected.items():
        if reason:
            assert reason.lower() in failed[name].lower(), (name, failed[name])
    good = [name for name, reason in expected.items() if not reason]
    assert sorted(summary.written) == sorted(Path(n).stem for n in good)
    assert summary.ignored and summary.ignored[0]["path"].endswith("notes.txt")
    assert not summary.ok
    manifest = _manifest(tmp_path / "out")
    assert manifest["counts"] == {"done": len(good), "failed": len(broken), "writing": 0}
    for name, reason in expected.items():
        record = manifest["cases"][Path(name).name.split(".")[0]]
        assert record["status"] == ("failed" if reason else "done")
        if reason:
            assert record["error"] and record["input"].endswith(name)
    assert _temps(tmp_path / "out") == []


@pytest.mark.parametrize("height,width,ext", [(40, 72, ".png"), (56, 24, ".tif"), (33, 47, ".jpg")])
def test_outputs_keep_width_height_and_orientation(make_predictor, tmp_path, height, width, ext):
    image = rgb(height, width, seed=7)
    image[: height // 2] //= 5  # an asymmetric image: dark upper half
    path = tmp_path / "in" / f"case{ext}"
    path.parent.mkdir()
    Image.fromarray(image).save(path, **({"quality": 100} if ext == ".jpg" else {}))
    predictor = make_predictor()
    extras = {"save_overlays": True, "save_probabilities": True}
    summary = predictor.predict_files(tmp_path / "in", tmp_path / "out", **extras, **QUIET)
    assert summary.ok, summary.failed
    for postfix in ("instances", "classes", "overlay"):
        written = Image.open(tmp_path / "out" / f"case_{postfix}.png")
        assert written.size == (width, height)
    import tifffile

    probs = tifffile.imread(tmp_path / "out" / "case_probabilities.tif")
    assert probs.shape == (3, height, width)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
    # the written classes equal predict_array on the same pixels, transposed back to (H, W)
    pixels = np.asarray(Image.open(path).convert("RGB")).transpose(2, 1, 0)
    direct = predictor.predict_array(pixels, save_probabilities=True)
    classes = np.asarray(Image.open(tmp_path / "out" / "case_classes.png"))
    np.testing.assert_array_equal(classes, direct["classes"].T)
    assert len(np.unique(classes)) > 1 and classes[: height // 2].mean() != classes[height // 2 :].mean()
    np.testing.assert_allclose(probs, direct["probabilities"].transpose(0, 2, 1), atol=1e-5)
    # overlay shows the input where there is no label: its top half stays bright
    overlay = np.asarray(Image.open(tmp_path / "out" / "case_overlay.png"))
    assert overlay.shape == (height, width, 3)


def test_rerun_skips_done_cases_and_never_overwrites_foreign_files(make_predictor, tmp_path):
    for i in range(3):
        write_png(tmp_path / "in" / f"c{i}.png", 32, 48, seed=i)
    out = tmp_path / "out"
    first = make_predictor().predict_files(tmp_path / "in", out, **QUIET)
    assert sorted(first.written) == ["c0", "c1", "c2"]
    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.glob("*.png")} == {0o666 & ~umask}, "usual file permissions"
    second = make_predictor().predict_files(tmp_path / "in", out, **QUIET)
    assert second.written == [] and sorted(second.skipped) == ["c0", "c1", "c2"] and second.ok
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamp
    # a file the manifest did not write blocks its case, untouched, unless overwrite
    write_png(tmp_path / "in" / "c3.png", 32, 48, seed=3)
    foreign = out / "c3_classes.png"
    foreign.write_bytes(b"someone else's file")
    third = make_predictor().predict_files(tmp_path / "in", out, **QUIET)
    assert [f["case"] for f in third.failed] == ["c3"] and "overwrite" in third.failed[0]["error"]
    assert foreign.read_bytes() == b"someone else's file"
    fourth = make_predictor().predict_files(tmp_path / "in", out, overwrite=True, **QUIET)
    assert fourth.ok and sorted(fourth.written) == ["c0", "c1", "c2", "c3"]
    assert Image.open(foreign).size == (48, 32)


_KILL_SCRIPT = """
import json, os, sys
import torch
torch.set_num_threads(1)
from attnseg_monai.inference import BundlePredictor
checkpoint, overrides, inputs, output, kill_at = sys.argv[1:6]
real_replace, renames = os.replace, [0]
def replace(src, dst):
    if ".attnseg-tmp" in str(src):
        renames[0] += 1
        if renames[0] == int(kill_at):
            os._exit(9)  # killed: no finally block, no manifest merge runs
    return real_replace(src, dst)
os.replace = replace
predictor = BundlePredictor(device="cpu")
predictor.from_bundle("hannet", checkpoint=checkpoint, overrides=json.loads(overrides))
predictor.predict_files(inputs, output, num_workers=0, progress=False)
"""


def test_killed_mid_commit_then_rerun_redoes_the_partial_case(hannet_checkpoint, make_predictor, tmp_path):
    for i in range(3):
        write_png(tmp_path / "in" / f"c{i}.png", 32, 40, seed=i)
    out = tmp_path / "out"
    # every case renames 2 files (instances, classes): dying at rename 4 leaves c0 done and c1 half renamed
    args = [str(hannet_checkpoint), json.dumps(HANNET_OVERRIDES), str(tmp_path / "in"), str(out), "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert not (out / MANIFEST_NAME).exists(), "the killed process never merged"
    part = json.loads(next((out / ".attnseg" / "parts").glob("*.json")).read_text())
    assert part["cases"]["c0"]["status"] == "done"
    assert part["cases"]["c1"]["status"] == "writing"
    assert (out / "c1_instances.png").exists() and not (out / "c1_classes.png").exists()
    assert any(name.startswith(".c1_classes.png") for name in _temps(out)), "the temporary file of c1 was left"
    rerun = make_predictor().predict_files(tmp_path / "in", out, **QUIET)
    assert rerun.skipped == ["c0"] and sorted(rerun.written) == ["c1", "c2"] and rerun.ok
    manifest = _manifest(out)
    assert manifest["counts"] == {"done": 3, "failed": 0, "writing": 0}
    assert _temps(out) == [] and not list((out / ".attnseg" / "parts").glob("*.json"))
    for record in manifest["cases"].values():
        for entry in record["outputs"].values():
            assert sha256_file(out / entry["path"]) == entry["sha256"]


def test_writing_record_with_complete_outputs_is_promoted_without_recompute(make_predictor, tmp_path):
    write_png(tmp_path / "in" / "a.png", 32, 40)
    out = tmp_path / "out"
    make_predictor().predict_files(tmp_path / "in", out, **QUIET)
    manifest = _manifest(out)
    manifest["cases"]["a"]["status"] = "writing"  # killed after the renames, before 'done' was journalled
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    stamp = (out / "a_classes.png").stat().st_mtime_ns
    rerun = make_predictor().predict_files(tmp_path / "in", out, **QUIET)
    assert rerun.skipped == ["a"] and rerun.written == []
    assert _manifest(out)["cases"]["a"]["status"] == "done"
    assert (out / "a_classes.png").stat().st_mtime_ns == stamp


def test_truncated_output_is_redone_and_the_damaged_file_kept_aside(make_predictor, tmp_path):
    for i in range(2):
        write_png(tmp_path / "in" / f"c{i}.png", 32, 40, seed=i)
    out = tmp_path / "out"
    assert sorted(make_predictor().predict_files(tmp_path / "in", out, **QUIET).written) == ["c0", "c1"]
    damaged = out / "c1_classes.png"
    good_bytes = damaged.read_bytes()
    damaged.write_bytes(good_bytes[:20])  # a partial copy, a disk error
    second = make_predictor().predict_files(tmp_path / "in", out, **QUIET)
    assert second.skipped == ["c0"] and second.written == ["c1"]
    assert damaged.read_bytes() == good_bytes
    kept = list((out / ".attnseg" / "replaced").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == good_bytes[:20]


def test_changed_input_and_new_output_kinds_are_redone(make_predictor, tmp_path):
    write_png(tmp_path / "in" / "a.png", 32, 32, seed=1)
    out = tmp_path / "out"
    assert make_predictor().predict_files(tmp_path / "in", out, **QUIET).written == ["a"]
    assert make_predictor().predict_files(tmp_path / "in", out, save_overlays=True, **QUIET).written == ["a"]
    assert (out / "a_overlay.png").is_file()
    write_png(tmp_path / "in" / "a.png", 32, 32, seed=2)
    assert make_predictor().predict_files(tmp_path / "in", out, save_overlays=True, **QUIET).written == ["a"]
    assert make_predictor().predict_files(tmp_path / "in", out, save_overlays=True, **QUIET).skipped == ["a"]


def test_output_names_cannot_escape_the_output_folder(make_predictor, tmp_path):
    write_png(tmp_path / "data" / "x.png", 32, 32)
    write_png(tmp_path / "data" / "y.png", 32, 32)
    datalist = {"testing": [{"image": "data/x.png", "name": "../../escape"}, {"image": "data/y.png", "name": "/abs"}]}
    (tmp_path / "list.json").write_text(json.dumps(datalist))
    out = tmp_path / "deep" / "out"
    summary = make_predictor().predict_files(tmp_path / "list.json", out, **QUIET)
    assert summary.ok
    written = sorted(p.name for p in out.iterdir() if p.is_file())
    assert written == sorted(
        ["abs_classes.png", "abs_instances.png", "escape_classes.png", "escape_instances.png", MANIFEST_NAME]
    )
    assert not (tmp_path / "escape_classes.png").exists() and not list(tmp_path.glob("deep/*.png"))


def test_predict_array_bf16_matches_fp32_mostly(make_predictor):
    image = rgb(64, 80, seed=3).transpose(2, 1, 0)
    fp32 = make_predictor().predict_array(image)
    bf16 = make_predictor(precision="bf16").predict_array(image)
    assert fp32["classes"].shape == bf16["classes"].shape == (80, 64)
    assert np.mean(fp32["classes"] == bf16["classes"]) > 0.9


def test_settings_are_validated(make_predictor, tmp_path):
    for bad in ({"precision": "fp8"}, {"device": "tpu"}):  # model settings: the constructor
        with pytest.raises(ValueError):
            BundlePredictor(**bad)
    write_png(tmp_path / "in" / "a.png", 16, 16)
    predictor = make_predictor()
    for bad in ({"wsi": "maybe"}, {"num_workers": -1}, {"output_ext": ".jpg"}):  # run settings: each run
        with pytest.raises(ValueError):
            predictor.predict_files(tmp_path / "in", tmp_path / "out", **bad)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    with pytest.raises(TypeError, match="unknown setting"):
        predictor.predict_files(tmp_path / "in", tmp_path / "out", save_overlay=True)
    with pytest.raises(RuntimeError, match="from_bundle"):
        BundlePredictor(device="cpu").predict_array(np.zeros((3, 16, 16)))


def test_output_folder_must_differ_from_input(make_predictor, tmp_path):
    write_png(tmp_path / "a.png", 16, 16)
    with pytest.raises(ValueError, match="must not be the input folder"):
        make_predictor().predict_files(tmp_path, tmp_path, **QUIET)


def test_a_crashing_reader_is_isolated_and_blamed_on_its_file(make_predictor, tmp_path, monkeypatch):
    for name in ("a", "b_crash", "c"):
        write_png(tmp_path / "in" / f"{name}.png", 24, 24)
    from attnseg_monai.inference import readers

    real = readers.PillowImageReader.read

    def read(self, path, **kwargs):
        if "crash" in Path(path).name and torch.utils.data.get_worker_info() is not None:
            os._exit(3)  # a reader segfaulting inside its worker process
        return real(self, path, **kwargs)

    monkeypatch.setattr(readers.PillowImageReader, "read", read)
    summary = make_predictor().predict_files(tmp_path / "in", tmp_path / "out", num_workers=2, progress=False)
    assert sorted(summary.written) == ["a", "c"]
    assert [f["case"] for f in summary.failed] == ["b_crash"] and "crashed" in summary.failed[0]["error"]
