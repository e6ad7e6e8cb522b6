"""The MONAI model zoo's checks on every bundle, offline: ``verify_metadata`` against the vendored meta schema, the
zoo's README sections, and numeric ``eval_metrics`` (measured figures, named in the README's Performance section).

The schema is MONAI's release asset
https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json, vendored byte
for byte from Project-MONAI/project-monai.github.io (commit 0c25c2d); its provenance: tests/data/schema/README.md.
``verify_net_in_out`` and ``ckpt_export`` run in test_bundles.py; test_export.py runs an exported copy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from monai.bundle import verify_metadata

from attnseg_monai.bundle import BUNDLES_DIR, list_bundles

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "schema" / "meta_schema_20240725.json"
SCHEMA_SHA256 = "d95c74c2915faef04ff6a2d6bd865da922bc8cd5afb4a0719b2dc6e1220528e7"  # the release asset, unedited
ZOO_SECTIONS = (
    "Model Overview",
    "Data",
    "Training configuration",
    "Input and output",
    "Performance",
    "MONAI Bundle Commands",
    "MONAI Label",
    "References",
    "License",
)


@pytest.mark.parametrize("name", list_bundles())
def test_metadata_validates_against_the_meta_schema(name: str, tmp_path: Path):
    meta = BUNDLES_DIR / name / "configs" / "metadata.json"
    assert json.loads(meta.read_text())["schema"].endswith("/" + SCHEMA.name)
    local = tmp_path / SCHEMA.name
    shutil.copy(SCHEMA, local)  # present at filepath: verify_metadata downloads nothing
    verify_metadata(
        meta_file=str(meta), filepath=str(local), create_dir=False, hash_val=SCHEMA_SHA256, hash_type="sha256"
    )


def test_the_vendored_schema_catches_a_broken_metadata(tmp_path: Path):
    meta = json.loads((BUNDLES_DIR / "hannet" / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    local = tmp_path / SCHEMA.name
    shutil.copy(SCHEMA, local)
    with pytest.raises(ValueError, match="network_data_format"):
        verify_metadata(
            meta_file=str(broken), filepath=str(local), create_dir=False, hash_val=SCHEMA_SHA256, hash_type="sha256"
        )


@pytest.mark.parametrize("name", list_bundles())
def test_readme_has_the_zoo_sections(name: str):
    text = (BUNDLES_DIR / name / "docs" / "README.md").read_text()
    headings = [h.strip().lower() for h in re.findall(r"^## (.+)$", text, flags=re.M)]
    for section in ZOO_SECTIONS:
        assert any(h.startswith(section.lower()) for h in headings), f"{name}: no '## {section}' section"
    assert "configs/paper.json" in text, f"{name}: the README does not say how to pick the paper recipe"
    assert "record" in text, f"{name}: the README does not describe the record beside the weights"


@pytest.mark.parametrize("name", list_bundles())
def test_eval_metrics_are_measured_numbers(name: str):
    meta = json.loads((BUNDLES_DIR / name / "configs" / "metadata.json").read_text())
    metrics = meta["eval_metrics"]
    assert metrics and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()), metrics
    performance = (BUNDLES_DIR / name / "docs" / "README.md").read_text().split("## Performance", 1)[1]
    assert "eval_metrics" in performance, f"{name}: the Performance section does not name the run of eval_metrics"
