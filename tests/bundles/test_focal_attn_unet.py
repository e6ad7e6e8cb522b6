"""focal_attn_unet bundle: the CRF override, the dilated override, and the resize inversion of written masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image
from torch import nn

from attnseg_monai.bundle import BUNDLES_DIR
from attnseg_monai.transforms.crf import CRFd

ROOT = BUNDLES_DIR / "focal_attn_unet"
TINY = {"network_def#features": [4, 8, 16, 32, 64]}


def _parser(*names: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(ROOT / "configs" / n) for n in names])
    parser.update({"bundle_root": str(ROOT), **overrides})
    return parser


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
def test_dilated_override_builds_the_dilated_network(base: str):
    plain = _parser(base, **TINY).get_parsed_content("network_def")
    assert _dilation_rates(plain) == [{(1, 1)}] * 5
    parser = _parser(base, "dilated.json", **TINY)
    net = parser.get_parsed_content("network_def")
    assert _dilation_rates(net) == [{(1, 1)}, {(1, 1)}, {(1, 1)}, {(2, 2)}, {(4, 4)}]
    assert parser.get_parsed_content("ckpt_dir").endswith("models/dilated")  # never overwrites the default model
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters())
    assert net.eval()(torch.rand(1, 1, 48, 64)).shape == (1, 2, 48, 64)


@pytest.mark.parametrize("configs", [["inference.json", "crf.json"], ["inference.json", "evaluate.json", "crf.json"]])
def test_crf_override_refines_probabilities_towards_image_edges(configs: list[str]):
    parser = _parser(*configs, **TINY, working_size=[64, 64])
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
def test_resize_inversion_restores_size_and_orientation(tmp_path, height: int, width: int, ext: str):
    # an odd-sized grey image whose bright region sits in the upper left: wrong orientation or size would show
    yy, xx = np.mgrid[0:height, 0:width]
    bright = ((yy - 0.3 * height) / (0.22 * height)) ** 2 + ((xx - 0.35 * width) / (0.25 * width)) ** 2 <= 1
    bright |= (yy > 0.75 * height) & (xx > 0.8 * width)
    pixels = np.where(bright, 220, 30).astype(np.uint8)
    path = tmp_path / f"odd{ext}"
    Image.fromarray(pixels).save(path)
    out_dir = tmp_path / "out"
    parser = _parser("inference.json", **TINY, working_size=[64, 64], output_dir=str(out_dir))
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


def test_quick_and_paper_recipes_are_config_files():
    quick = _parser("train.json", dataset_dir="/data/montgomery")
    paper = _parser("train.json", "paper.json")
    assert quick.get_parsed_content("recipe") == "quick" and paper.get_parsed_content("recipe") == "paper"
    expected = {
        "working_size": ([256, 256], [512, 512]),
        "max_epochs": (40, 100),
        "train_patch_size": ([128, 128], [512, 512]),
        "num_samples": (2, 1),
        "batch_size": (2, 4),
        "num_workers": (0, 4),
        "cache_rate": (1.0, 0.0),
    }
    for key, (q, p) in expected.items():
        assert (quick.get_parsed_content(key), paper.get_parsed_content(key)) == (q, p), key
    spec = paper.get_parsed_content("record")
    assert spec.recipe == "paper" and spec.preprocessing == {"working_size": [512, 512]}


def test_dilated_checkpoint_is_inferred_with_its_recorded_network(tmp_path):
    """A model trained with dilated.json is inferred by plain inference.json: the record brings the dilations and
    the working size; no override file or network setting has to be repeated."""
    from tests.bundles.helpers import configs, copy_bundle, overrides, run_workflow

    root = copy_bundle("focal_attn_unet", tmp_path)
    run_workflow(
        configs(root, "train.json", "dilated.json"), root, "train", "training", **overrides("focal_attn_unet", "train")
    )
    checkpoint = root / "models" / "dilated" / "model.pt"
    parser = ConfigParser()
    parser.read_config(configs(root, "inference.json"))
    parser.update({"bundle_root": str(root), "ckpt_path": str(checkpoint)})
    net = parser.get_parsed_content("network_def")
    assert _dilation_rates(net) == [{(1, 1)}, {(1, 1)}, {(1, 1)}, {(2, 2)}, {(4, 4)}]
    assert list(net.features) == TINY["network_def#features"]
    assert parser.get_parsed_content("working_size") == overrides("focal_attn_unet", "train")["working_size"]
