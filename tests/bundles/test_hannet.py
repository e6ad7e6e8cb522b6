"""hannet-specific behaviour: recipe switch on real data, bundle root from any working directory, MoNuSeg input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser
from PIL import Image

from attnseg_monai.bundle import BUNDLES_DIR, find_bundle_root

CONFIGS = BUNDLES_DIR / "hannet" / "configs"


def _parser(**overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update(overrides)
    return parser


def _write_monuseg(root: Path) -> None:
    """Seven 64x64 tissue TIFFs with Aperio XML annotations of a few square nuclei."""
    (root / "Tissue Images").mkdir(parents=True)
    (root / "Annotations").mkdir()
    rng = np.random.default_rng(0)
    for k in range(7):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "Tissue Images" / f"T{k}.tif")
        regions = "".join(
            f'<Region Id="{i}"><Vertices>'
            + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in ((x0, x0), (x0 + 8, x0), (x0 + 8, x0 + 8), (x0, x0 + 8)))
            + "</Vertices></Region>"
            for i, x0 in enumerate((5, 25, 45))
        )
        xml = f'<Annotations><Annotation Id="1"><Regions>{regions}</Regions></Annotation></Annotations>'
        (root / "Annotations" / f"T{k}.xml").write_text(xml)


def test_embedded_data_uses_the_quick_recipe():
    parser = _parser()
    assert parser.get_parsed_content("use_embedded_data") is True
    assert parser.get_parsed_content("max_epochs") == parser["quick_epochs"]
    assert parser.get_parsed_content("train_patch_size") == [128, 128]


def test_real_data_switches_to_the_paper_recipe(tmp_path):
    _write_monuseg(tmp_path / "monuseg")
    parser = _parser(dataset_dir=str(tmp_path / "monuseg"), datalist_file=str(tmp_path / "datalist.json"))
    assert parser.get_parsed_content("use_embedded_data") is False
    assert parser.get_parsed_content("max_epochs") == parser["paper_epochs"] == 300
    assert parser.get_parsed_content("train_patch_size") == parser["roi_size"]
    items = parser.get_parsed_content("train#datalist")
    assert len(items) >= 5 and all(Path(i["label"]).is_file() for i in items)
    label = np.asarray(Image.open(items[0]["label"]))
    assert set(np.unique(label)) == {0, 1, 2, 3}, "three rasterised nuclei instances"


@pytest.mark.parametrize("where", ["repo", "bundle", "elsewhere"])
def test_bundle_root_from_any_working_directory(where, tmp_path):
    cwd = {"repo": BUNDLES_DIR.parent, "bundle": BUNDLES_DIR / "hannet", "elsewhere": tmp_path}[where]
    assert Path(find_bundle_root("hannet", cwd=cwd)) == BUNDLES_DIR / "hannet"


def test_unknown_bundle_root_names_the_override(tmp_path):
    with pytest.raises(FileNotFoundError, match="--bundle_root"):
        find_bundle_root("no_such_bundle", cwd=tmp_path)
