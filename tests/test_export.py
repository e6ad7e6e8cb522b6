"""``attnseg export``: a self-contained bundle folder or zip that runs from anywhere, and what it refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from attnseg_monai.bundle import read_record, record_path
from attnseg_monai.cli import main
from attnseg_monai.inference import load_bundle
from attnseg_monai.inference.export import ExportError, export_bundle
from tests.bundles.helpers import copy_bundle

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def trained_hannet(trained_bundle) -> Path:
    """The session's hannet copy trained for one epoch with the tiny test network (its record says so)."""
    return trained_bundle("hannet")


def test_export_folder_is_complete_and_runs_from_anywhere(trained_hannet: Path, tmp_path: Path):
    dest = tmp_path / "exported" / "my_hannet"
    assert main(["export", str(trained_hannet), str(dest)]) == 0
    names = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert {"LICENSE", "docs/README.md", "docs/data_license.txt", "configs/metadata.json"} <= names
    assert {
        "configs/train.json",
        "configs/inference.json",
        "configs/paper.json",
        "configs/multi_gpu_train.json",
    } <= names
    assert {"models/model.pt", "models/model.record.json"} <= names
    assert not any(n.startswith(("eval/", "data/")) or "checkpoint" in n for n in names), names
    assert read_record(dest / "models" / "model.pt", "hannet", dest).record.network["features"] == [4, 8, 16, 32, 64]
    # MONAI's own runner, from another folder, on one sample, without any override but the window and the input:
    # the exported folder is the bundle (its record gives the tiny network)
    sample = sorted((trained_hannet / "data" / "generated" / "nuclei" / "images").glob("*.png"))[0]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(dest / "configs" / "inference.json")]
    cmd += ["--roi_size", "[64, 64]", "--dataset_dir", str(sample)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (dest / "eval" / "predictions").glob("*_classes.png")] == [f"{sample.stem}_classes.png"]


def test_export_zip_holds_the_bundle_folder(trained_hannet: Path, tmp_path: Path):
    written = export_bundle(trained_hannet, tmp_path / "hannet_bundle", as_zip=True)
    assert written == tmp_path / "hannet_bundle.zip"
    with zipfile.ZipFile(written) as zf:
        names = set(zf.namelist())
    assert {"hannet/configs/inference.json", "hannet/models/model.pt", "hannet/models/model.record.json"} <= names
    assert all(n.startswith("hannet/") for n in names)
    assert not list(tmp_path.glob(".*partial*")), "a temporary folder was left behind"


def test_export_of_an_untrained_bundle_and_with_a_checkpoint_from_elsewhere(trained_hannet: Path, tmp_path: Path):
    fresh = copy_bundle("hannet", tmp_path / "fresh")
    untrained = export_bundle(fresh, tmp_path / "untrained")
    assert (untrained / "configs" / "inference.json").is_file() and not (untrained / "models").exists()
    # a plain state dict (no record, as the model zoo ships) that fits the network inference.json builds
    fitting = tmp_path / "zoo_model.pt"
    torch.save(load_bundle(fresh, trust_bundle=True, load_weights=False).network.state_dict(), fitting)
    written = export_bundle("hannet", tmp_path / "zoo", checkpoint=fitting)
    assert (written / "models" / "model.pt").is_file() and not record_path(written / "models" / "model.pt").exists()
    # ... checked against an outside folder's config only when that folder is trusted (its configs run code)
    with pytest.raises(ExportError, match="trust_bundle"):
        export_bundle(trained_hannet, tmp_path / "untrusted", checkpoint=fitting)
    assert not (tmp_path / "untrusted").exists()
    elsewhere = tmp_path / "weights"
    elsewhere.mkdir()
    shutil.copy2(trained_hannet / "models" / "model.pt", elsewhere / "best.pt")
    shutil.copy2(record_path(trained_hannet / "models" / "model.pt"), record_path(elsewhere / "best.pt"))
    written = export_bundle("hannet", tmp_path / "with_weights", checkpoint=elsewhere / "best.pt")
    assert read_record(written / "models" / "model.pt").record.network["features"] == [4, 8, 16, 32, 64]


def test_export_refusals_write_nothing(trained_hannet: Path, tmp_path: Path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists and is not an empty folder"):
        export_bundle("hannet", occupied)
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    with pytest.raises(ExportError, match="unknown bundle"):
        export_bundle("no_such_bundle", tmp_path / "x")
    # weights without a record that do not fit the default network: refused, nothing written
    elsewhere = tmp_path / "plain.pt"
    shutil.copy2(trained_hannet / "models" / "model.pt", elsewhere)
    with pytest.raises(ExportError, match="plain.pt.*do not fit"):
        export_bundle("hannet", tmp_path / "bad", checkpoint=elsewhere)
    # a record of another bundle
    shutil.copy2(record_path(trained_hannet / "models" / "model.pt"), record_path(elsewhere))
    record = json.loads(record_path(elsewhere).read_text())
    record_path(elsewhere).write_text(json.dumps({**record, "bundle": "mcsa_unet"}))
    with pytest.raises(ExportError, match="belongs to the bundle 'mcsa_unet'"):
        export_bundle("hannet", tmp_path / "bad", checkpoint=elsewhere)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".*partial*"))
    # a folder that is not a bundle, a missing checkpoint, a zip file that exists (also as a folder)
    with pytest.raises(ExportError, match="metadata.json not found"):
        export_bundle(occupied, tmp_path / "x")
    with pytest.raises(ExportError, match="missing.pt not found"):
        export_bundle("hannet", tmp_path / "x", checkpoint=tmp_path / "missing.pt")
    (tmp_path / "taken.zip").write_bytes(b"mine")
    (tmp_path / "empty.zip").mkdir()
    for taken in ("taken", "empty.zip"):
        with pytest.raises(ExportError, match="already exists"):
            export_bundle("hannet", tmp_path / taken, as_zip=True)
    assert (tmp_path / "taken.zip").read_bytes() == b"mine" and not any((tmp_path / "empty.zip").iterdir())
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".*partial*"))
    assert main(["export", "hannet", str(occupied)]) == 2


def test_model_zoo_checks_pass_on_the_exported_folder(trained_hannet: Path, tmp_path: Path):
    """The zoo's checks, run on the exported copy (not the checkout): verify_metadata against the vendored schema,
    verify_net_in_out on the recorded network, ckpt_export to TorchScript with the exported weights."""
    from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

    dest = export_bundle(trained_hannet, tmp_path / "zoo" / "hannet")
    schema = Path(__file__).resolve().parent / "data" / "schema" / "meta_schema_20240725.json"
    local = tmp_path / schema.name
    shutil.copy(schema, local)
    meta = str(dest / "configs" / "metadata.json")
    verify_metadata(meta_file=meta, filepath=str(local), create_dir=False)
    config = str(dest / "configs" / "inference.json")
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=config, device="cpu", n=4, p=1, any=1)
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(dest / "models" / "model.pt"),
        meta_file=meta,
        config_file=config,
    )
    scripted = torch.jit.load(str(ts)).eval()
    assert scripted(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)
