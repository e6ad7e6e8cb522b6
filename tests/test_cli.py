"""The ``attnseg`` command line: list, info, infer and evaluate, with their exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from attnseg_monai.bundle import BUNDLES_DIR
from attnseg_monai.cli import main
from tests.inference.helpers import (
    HANNET_OVERRIDES,
    save_tiny_hannet_checkpoint,
    write_3d_bundle,
    write_broken_set,
    write_png,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_hannet_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.pt")


def _infer_args(inputs, output, checkpoint, *extra):
    return [
        "infer",
        "hannet",
        str(inputs),
        str(output),
        "--checkpoint",
        str(checkpoint),
        "--overrides",
        json.dumps(HANNET_OVERRIDES),
        "--device",
        "cpu",
        "--num_workers",
        "0",
        "--noprogress",
        *extra,
    ]


def test_list_and_info(capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "hannet" in listing and "HanNet" in listing and "2D" in listing
    assert main(["info", "hannet", "--overrides", json.dumps(HANNET_OVERRIDES), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["network"] == "attnseg_monai.networks.nets.HanNet" and info["network_args"]["out_channels"] == 3
    assert info["classes"] == {"0": "background", "1": "nucleus", "2": "boundary"}
    assert info["parameters"] > 0 and info["gflops"] > 0 and info["flops_input_size"] == [64, 64]
    version = json.loads((BUNDLES_DIR / "hannet" / "configs" / "metadata.json").read_text())["version"]
    assert info["version"] == version and [o["postfix"] for o in info["outputs"]] == ["instances", "classes"]
    assert main(["info", "hannet", "--overrides", json.dumps(HANNET_OVERRIDES)]) == 0
    assert "kFLOP/pixel" in capsys.readouterr().out


def test_infer_exit_codes_and_failure_listing(checkpoint, tmp_path, capsys):
    expected = write_broken_set(tmp_path / "mixed")
    code = main(_infer_args(tmp_path / "mixed", tmp_path / "out", checkpoint))
    text = capsys.readouterr().out
    assert code == 1
    for name, reason in expected.items():
        if reason:
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(str(tmp_path / "mixed" / name)))
            assert reason.lower() in line.lower()
    assert "notes.txt" in text
    write_png(tmp_path / "good" / "a.png", 24, 40)
    assert main(_infer_args(tmp_path / "good", tmp_path / "out_good", checkpoint, "--save_overlays")) == 0
    assert Image.open(tmp_path / "out_good" / "a_overlay.png").size == (40, 24)


def test_infer_json_summary(checkpoint, tmp_path, capsys):
    write_png(tmp_path / "in" / "a.png", 24, 40)
    assert main(_infer_args(tmp_path / "in", tmp_path / "out", checkpoint, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == ["a"] and summary["ok"] and summary["manifest_counts"]["done"] == 1
    assert main(_infer_args(tmp_path / "in", tmp_path / "out", checkpoint, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == ["a"]


def test_untrusted_bundle_and_bad_checkpoint_exit_2(checkpoint, tmp_path, caplog):
    marker = tmp_path / "ran"
    outside = write_3d_bundle(tmp_path / "outside", marker=marker)
    nii = tmp_path / "in"
    nii.mkdir()
    code = main(["infer", str(outside), str(nii), str(tmp_path / "out"), "--device", "cpu", "--noprogress"])
    assert code == 2 and "trust_bundle" in caplog.text and not marker.exists()
    (tmp_path / "bad.pt").write_bytes(b"\x80garbage")
    write_png(nii / "a.png", 16, 16)
    args = _infer_args(nii, tmp_path / "out2", tmp_path / "bad.pt")
    assert main(args) == 2


def test_evaluate_command(tmp_path, capsys):
    label = np.zeros((20, 20), np.uint8)
    label[5:15, 5:15] = 255
    (tmp_path / "labels").mkdir()
    (tmp_path / "pred").mkdir()
    Image.fromarray(label).save(tmp_path / "labels" / "a.png")
    Image.fromarray((label > 0).astype(np.uint8)).save(tmp_path / "pred" / "a_seg.png")
    args = ["evaluate", str(tmp_path / "pred"), str(tmp_path / "labels"), "--num_classes", "2", "--pred_postfix", "seg"]
    assert main(args) == 0
    assert "dice_1" in capsys.readouterr().out
    assert (tmp_path / "pred" / "evaluation" / "metrics.csv").is_file()
    Image.fromarray(label).save(tmp_path / "labels" / "b.png")
    assert main(args + ["--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 1 and summary["metrics"]["dice_1"]["mean"] == pytest.approx(1.0)
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "labels")]) == 2


def test_json_objects_on_the_command_line_keep_true_false_and_null(tmp_path, capsys):
    """python-fire turns the bare words of a JSON object into strings; --overrides and --regions give them back."""
    from attnseg_monai.cli import _overrides

    assert _overrides({"a": "false", "b": ["true", {"c": "null"}], "d": "text", "e": 1}) == {
        "a": False,
        "b": [True, {"c": None}],
        "d": "text",
        "e": 1,
    }
    assert _overrides('{"a": false, "b": null}') == {"a": False, "b": None}
    label = np.zeros((20, 20), np.uint8)
    label[4:16, 4:16], label[8:12, 8:12] = 1, 2
    for folder, name in (("labels", "eye.png"), ("pred", "eye_seg.png")):
        (tmp_path / folder).mkdir()
        Image.fromarray(label).save(tmp_path / folder / name)
    args = ["evaluate", str(tmp_path / "pred"), str(tmp_path / "labels"), "--num_classes", "3", "--pred_postfix", "seg"]
    assert main([*args, "--json", "--regions", '{"disc": [1, 2], "cup": [2]}']) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["dice_disc"]["mean"] == pytest.approx(1.0) and "dice_1" not in metrics
