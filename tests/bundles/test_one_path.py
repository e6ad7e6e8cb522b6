"""One inference path: ``python -m monai.bundle run`` and ``attnseg infer`` write the same label files, byte for
byte and with the same names, for every bundle (2D images, CT volumes, DANIE's slice-wise CT)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from attnseg_monai.cli import main
from tests.bundles.helpers import configs, overrides, run_workflow, working_directory

pytestmark = pytest.mark.slow


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name != "attnseg_manifest.json"
    }


def test_monai_bundle_run_and_attnseg_infer_write_identical_files(bundle_copy, tmp_path: Path):
    name, root = bundle_copy
    by_bundle = tmp_path / "monai_bundle_run"
    settings = overrides(name, "infer", net=False)
    with working_directory(tmp_path):
        wf = run_workflow(configs(root, "inference.json"), root, "infer", "run", output_dir=str(by_bundle), **settings)
    images = sorted(str(item["image"]) for item in wf.parser.get_parsed_content("datalist"))
    assert images, f"{name}: the inference datalist is empty"
    listing = tmp_path / "inputs.json"
    listing.write_text(json.dumps({"testing": [{"image": i} for i in images]}))

    by_cli = tmp_path / "attnseg_infer"
    args = ["infer", str(root), str(listing), str(by_cli), "--trust_bundle", "--device", "cpu", "--num_workers", "0"]
    args += ["--overrides", json.dumps(settings), "--noprogress"]
    assert main(args) == 0

    expected = _digests(by_bundle)
    assert expected, f"{name}: monai.bundle run wrote no label file"
    assert _digests(by_cli) == expected, f"{name}: attnseg infer and monai.bundle run wrote different files"
