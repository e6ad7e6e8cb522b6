"""hannet-specific behaviour: the quick and paper recipes as config files, MoNuSeg input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.bundle import ConfigParser
from PIL import Image

from attnseg_monai.bundle import BUNDLES_DIR

CONFIGS = BUNDLES_DIR / "hannet" / "configs"


def _parser(*files: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in (files or ("train.json",))])
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser["bundle_root"] = str(BUNDLES_DIR / "hannet")
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


def test_train_json_is_the_quick_recipe_whatever_the_data(tmp_path):
    _write_monuseg(tmp_path / "monuseg")
    for extra in ({}, {"dataset_dir": str(tmp_path / "monuseg")}):
        parser = _parser(**extra)
        assert parser.get_parsed_content("recipe") == "quick"
        assert parser.get_parsed_content("max_epochs") == parser["quick_epochs"] == 12
        assert parser.get_parsed_content("train_patch_size") == [128, 128]
        assert parser.get_parsed_content("val_interval") == 4


def test_paper_json_is_the_paper_recipe_on_real_data(tmp_path):
    _write_monuseg(tmp_path / "monuseg")
    parser = _parser(
        "train.json", "paper.json", dataset_dir=str(tmp_path / "monuseg"), datalist_file=str(tmp_path / "dl.json")
    )
    assert parser.get_parsed_content("use_embedded_data") is False
    assert parser.get_parsed_content("recipe") == "paper"
    assert parser.get_parsed_content("max_epochs") == parser["paper_epochs"] == 300
    assert parser.get_parsed_content("train_patch_size") == parser["roi_size"] == [256, 256]
    assert parser.get_parsed_content("val_interval") == 5
    items = parser.get_parsed_content("train#datalist")
    assert len(items) >= 5 and all(Path(i["label"]).is_file() for i in items)
    label = np.asarray(Image.open(items[0]["label"]))
    assert set(np.unique(label)) == {0, 1, 2, 3}, "three rasterised nuclei instances"
