"""focal_attn_unet bundle: the CRF override, the dilated override, the resize inversion of written masks, the
quick and paper recipes as config files, and the record bringing the working size and the dilations to inference."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image
from torch import nn

from attnseg_monai.bundle import read_record, record_path
from attnseg_monai.networks import network_config
from attnseg_monai.transforms.crf import CRFd
from tests.bundles.helpers import config_strings, configs, copy_bundle, overrides, run_workflow

NAME = "focal_attn_unet"
TINY = {"network_def#features": [4, 8, 16, 32, 64]}
DILATIONS = [{(1, 1)}, {(1, 1)}, {(1, 1)}, {(2, 2)}, {(4, 4)}]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A copy of the bundle without models/: a model trained in the checkout would otherwise decide the network
    (train.json and inference.json build the network recorded beside models/model.pt)."""
    return copy_bundle(NAME, tmp_path_factory.mktemp("clean"))


@pytest.fixture
def parser_of(root: Path) -> Callable[..., ConfigParser]:
    """``parser_of("train.json", "paper.json", **settings)``: the configs of the clean copy, layered."""

    def make(*names: str, **settings) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(configs(root, *names))
        parser.update({"bundle_root": str(root), **settings})
        return parser

    return make


def _lungs(size: int = 64, shift: float = 0.0) -> torch.Tensor:
    """Two dark elliptical lung fields, optionally shifted sideways by ``shift`` pixels; 1 inside, 0 outside."""
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    c = size / 2
    left = ((yy - c) / (0.32 * size)) ** 2 + ((xx - shift - 0.3 * size) / (0.15 * size)) ** 2 <= 1
    right = ((yy - c) / (0.32 * size)) ** 2 + ((xx - shift - 0.7 * size) / (0.15 * size)) ** 2 <= 1
    return (left | right).float()


def _dilation_rates(net: nn.Module) -> list[set[tuple[int, ...]]]:
    return [
        {m.dilation for m in stage.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)}
        for stage in net.encoder
    ]


@pytest.mark.parametrize("base", ["train.json", "inference.json"])
def test_dilated_override_builds_the_dilated_network(parser_of, base: str):
    plain = parser_of(base, **TINY).get_parsed_content("network_def")
    assert _dilation_rates(plain) == [{(1, 1)}] * 5
    parser = parser_of(base, "dilated.json", **TINY)
    net = parser.get_parsed_content("network_def")
    assert _dilation_rates(net) == DILATIONS
    assert parser.get_parsed_content("ckpt_dir").endswith("models/dilated")  # never overwrites the default model
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters())
    assert net.eval()(torch.rand(1, 1, 48, 64)).shape == (1, 2, 48, 64)


@pytest.mark.parametrize("configs", [["inference.json", "crf.json"], ["inference.json", "evaluate.json", "crf.json"]])
def test_crf_override_refines_probabilities_towards_image_edges(parser_of, configs: list[str]):
    parser = parser_of(*configs, **TINY, working_size=[64, 64])
    post = parser.get_parsed_content("postprocessing")
    names = [type(t).__name__ for t in post.transforms]
    assert names[:3] == ["Activationsd", "CRFd", "Invertd"], names  # CRF at the network's resolution, then resize back
    crf = post.transforms[1]
    assert isinstance(crf, CRFd)
    # the bundle's own CRF settings on a tiny synthetic radiograph: the prediction's lungs are 3 px off and noisy
    gen = torch.Generator().manual_seed(0)
    truth = _lungs()
    image = (0.75 - 0.5 * truth + 0.02 * torch.randn(64, 64, generator=gen))[None]
    smooth = torch.nn.functional.avg_pool2d(_lungs(shift=3.0)[None, None], 5, stride=1, padding=2)[0, 0]
    p_lung = torch.sigmoid(6.0 * (smooth - 0.5) + 1.0 * torch.randn(64, 64, generator=gen))
    probs = torch.stack([1 - p_lung, p_lung])
    out = crf({"pred": probs, "image": image})["pred"]
    assert out.shape == probs.shape
    torch.testing.assert_close(out.sum(0), torch.ones(64, 64), atol=1e-5, rtol=0)
    errors_before = int(((probs.argmax(0) == 1).float() != truth).sum())
    errors_after = int(((out.argmax(0) == 1).float() != truth).sum())
    assert errors_after < 0.6 * errors_before, (errors_before, errors_after)


@pytest.mark.parametrize(("height", "width", "ext"), [(131, 97, ".png"), (75, 150, ".tif")])
def test_resize_inversion_restores_size_and_orientation(parser_of, tmp_path, height: int, width: int, ext: str):
    # an odd-sized grey image whose bright region sits in the upper left: wrong orientation or size would show
    yy, xx = np.mgrid[0:height, 0:width]
    bright = ((yy - 0.3 * height) / (0.22 * height)) ** 2 + ((xx - 0.35 * width) / (0.25 * width)) ** 2 <= 1
    bright |= (yy > 0.75 * height) & (xx > 0.8 * width)
    pixels = np.where(bright, 220, 30).astype(np.uint8)
    path = tmp_path / f"odd{ext}"
    Image.fromarray(pixels).save(path)
    out_dir = tmp_path / "out"
    parser = parser_of("inference.json", **TINY, working_size=[64, 64], output_dir=str(out_dir))
    pre, post = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("postprocessing")
    data = pre({"image": str(path)})
    image = data["image"]
    assert tuple(image.shape) == (1, 64, 64)  # the network sees the working resolution
    # stand-in for the network: "lung" probability = the preprocessed image, so the mask must reproduce the image
    data["pred"] = torch.cat([1 - image, image], dim=0)
    post(data)
    mask = np.asarray(Image.open(out_dir / f"odd_mask{'.png'}"))
    assert mask.shape == (height, width)
    assert set(np.unique(mask)) <= {0, 255}
    agreement = float(((mask > 0) == bright).mean())
    assert agreement > 0.97, agreement


PAPER = {  # setting: (quick recipe = train.json, paper recipe = train.json + paper.json)
    "working_size": ([256, 256], [512, 512]),
    "max_epochs": (40, 100),
    "train_patch_size": ([128, 128], [512, 512]),
    "num_samples": (2, 1),
    "batch_size": (2, 4),
    "num_workers": (0, 4),
    "cache_rate": (1.0, 0.0),
}


def test_quick_and_paper_recipes_are_config_files(parser_of, root: Path):
    # the quick recipe on the user's data: --dataset_dir changes no setting any more
    quick = parser_of("train.json", dataset_dir="/data/montgomery")
    paper = parser_of("train.json", "paper.json")
    assert quick.get_parsed_content("recipe") == "quick" and paper.get_parsed_content("recipe") == "paper"
    for key, (q, p) in PAPER.items():
        assert (quick.get_parsed_content(key), paper.get_parsed_content(key)) == (q, p), key
    # the values reach the places that use them
    for key, value in (
        ("lr_scheduler#T_max", 100),
        ("train#trainer#max_epochs", 100),
        ("train#dataloader#batch_size", 4),
        ("train#dataloader#num_workers", 4),
        ("validate#dataset#cache_rate", 0.0),
        ("train#random_transforms#1#roi_size", [512, 512]),
        ("train#random_transforms#1#num_samples", 1),
        ("validate#inferer#roi_size", [512, 512]),
    ):
        assert paper.get_parsed_content(key) == value, key
    resize = paper.get_parsed_content("validate#preprocessing").transforms[3]
    assert list(resize.resizer.spatial_size) == [512, 512]
    # paper.json holds exactly what the paper recipe changes
    assert set(json.loads((root / "configs" / "paper.json").read_text())) == {"recipe", *PAPER}
    # what inference must repeat is recorded, with the recipe's name
    for parser, recipe, size in ((quick, "quick", [256, 256]), (paper, "paper", [512, 512])):
        spec = parser.get_parsed_content("record")
        assert spec.recipe == recipe and spec.preprocessing == {"working_size": size}
    # use_embedded_data only chooses the data (the datalists), never a setting
    for name in ("train.json", "inference.json", "evaluate.json", "paper.json", "dilated.json", "crf.json"):
        config = json.loads((root / "configs" / name).read_text())
        for path, text in config_strings(config):
            if "@use_embedded_data" in text:
                assert "datalist" in path.split("#"), f"{name}: {path} switches on use_embedded_data"


def test_paper_record_sets_the_working_size_of_inference(parser_of, root: Path, tmp_path: Path):
    """A checkpoint recorded with the paper recipe is inferred at 512x512 by plain inference.json; a checkpoint
    without a record (a plain state dict, as the model zoo ships) at the quick recipe's 256x256."""
    net = parser_of("train.json", **TINY).get_parsed_content("network_def")
    checkpoint = tmp_path / "paper" / "model.pt"
    checkpoint.parent.mkdir()
    torch.save(net.state_dict(), checkpoint)
    plain = parser_of("inference.json", ckpt_path=str(checkpoint), **TINY)
    assert plain.get_parsed_content("working_size") == [256, 256]
    spec = parser_of("train.json", "paper.json").get_parsed_content("record")
    spec.record_for(net).write(record_path(checkpoint))
    parser = parser_of("inference.json", ckpt_path=str(checkpoint))
    assert parser.get_parsed_content("working_size") == [512, 512]
    assert list(parser.get_parsed_content("inferer").roi_size) == [512, 512]
    resize = parser.get_parsed_content("preprocessing").transforms[3]
    assert list(resize.resizer.spatial_size) == [512, 512]
    assert network_config(parser.get_parsed_content("network_def")) == network_config(net)


def test_dilated_checkpoint_is_inferred_with_its_recorded_network(tmp_path: Path):
    """A model trained with dilated.json is inferred by plain inference.json: the record brings the dilations and
    the working size; no override file or network setting has to be repeated, and every tensor is loaded."""
    root = copy_bundle(NAME, tmp_path)
    train = overrides(NAME, "train")
    run_workflow(configs(root, "train.json", "dilated.json"), root, "train", "training", **train)
    checkpoint = root / "models" / "dilated" / "model.pt"
    assert checkpoint.is_file() and record_path(checkpoint).is_file()
    assert not (root / "models" / "model.pt").exists(), "dilated.json must not overwrite the default model"
    record = read_record(checkpoint, NAME, root).record
    assert record.network["dilations"] == [1, 1, 1, 2, 4]
    assert record.network["features"] == TINY["network_def#features"]
    assert record.preprocessing == {"working_size": train["working_size"]}

    image = tmp_path / "in" / "film.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 70), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    wf = ConfigWorkflow(
        config_file=configs(root, "inference.json"),  # no dilated.json, no network or working-size override
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        ckpt_path=str(checkpoint),
        dataset_dir=str(image.parent),
        output_dir=str(out),
    )
    wf.initialize()
    net = wf.parser.get_parsed_content("network")
    assert _dilation_rates(net) == DILATIONS
    assert list(net.features) == TINY["network_def#features"]
    assert wf.parser.get_parsed_content("working_size") == train["working_size"]
    assert list(wf.parser.get_parsed_content("inferer").roi_size) == train["working_size"]
    wf.run()
    wf.finalize()
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    own = net.state_dict()
    assert set(own) == set(saved)
    for key, value in saved.items():
        assert torch.equal(own[key].cpu(), value), f"{key} was not loaded"
    assert np.asarray(Image.open(out / "film_mask.png")).shape == (90, 70)
    # dilated.json layered on inference.json (its ckpt_dir) finds the same checkpoint and builds the same network
    layered = ConfigParser()
    layered.read_config(configs(root, "inference.json", "dilated.json"))
    layered.update({"bundle_root": str(root)})
    assert layered.get_parsed_content("ckpt_path") == str(checkpoint)
    assert network_config(layered.get_parsed_content("network_def")) == record.network
    # the same checkpoint with the default (undilated) network would be a different model: the record decides
    default = ConfigParser()
    default.read_config(configs(root, "inference.json"))
    default.update({"bundle_root": str(root), **TINY})
    assert _dilation_rates(default.get_parsed_content("network_def")) == [{(1, 1)}] * 5
