"""Small writers for the inference tests: images in every input format, broken files, slides, a tiny 3D bundle."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from tests.ct_series import write_ct_slices

#: overrides that make hannet tiny (as tests/bundles/cases/hannet.py) with a 64-pixel window
#: a checkpoint path that holds nothing: ``load_bundle(name, load_weights=False, checkpoint=UNTRAINED)`` builds the
#: network the config and the overrides describe, not the one recorded beside a model trained in this checkout
UNTRAINED = Path(__file__).resolve().parent / "untrained" / "model.pt"
#: run settings of the tests: no reader processes, no progress bars
QUIET = {"num_workers": 0, "progress": False}
HANNET_OVERRIDES = {"network_def#features": [4, 8, 16, 32, 64], "roi_size": [64, 64]}

#: an oblique, anisotropic affine with an LPS-like origin
OBLIQUE_AFFINE = np.array(
    [
        [0.0, -0.78, 0.05, 120.5],
        [0.75, 0.0, 0.0, -95.25],
        [0.0, 0.02, 2.5, -310.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def calibrated_state_dict(network, in_channels: int, size: int = 64) -> dict:
    """Weights of a freshly built network whose batch-norm statistics were measured on inputs with a dark upper half
    (random weights with default statistics give one class everywhere, which would hide a transposed output)."""
    import torch

    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None
        m.reset_running_stats()
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    network.train()
    try:
        with torch.no_grad():
            for _ in range(3):
                x = torch.rand(2, in_channels, size, size, generator=generator)
                x[:, :, : size // 2] *= 0.2
                network(x)
    finally:
        torch.set_num_threads(threads)
    network.eval()
    return network.state_dict()


def save_tiny_hannet_checkpoint(path: Path) -> Path:
    """Build the tiny hannet of :data:`HANNET_OVERRIDES` (current torch RNG) and save its calibrated weights."""
    import torch

    from attnseg_monai.inference import load_bundle

    parts = load_bundle("hannet", load_weights=False, checkpoint=UNTRAINED, overrides=HANNET_OVERRIDES)
    torch.save(calibrated_state_dict(parts.network, parts.in_channels), path)
    return path


def tiny_hannet_predictor(checkpoint: Path, overrides: dict | None = None, **settings):
    """A CPU ``BundlePredictor`` of the hannet bundle with the tiny network of :data:`HANNET_OVERRIDES` and
    ``checkpoint`` (see :func:`save_tiny_hannet_checkpoint`); ``overrides`` and ``settings`` on top."""
    from attnseg_monai.inference import BundlePredictor

    return BundlePredictor(**{"device": "cpu", **settings}).from_bundle(
        "hannet", checkpoint=checkpoint, overrides={**HANNET_OVERRIDES, **(overrides or {})}
    )


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random H&E-ish RGB pixels (H, W, 3)."""
    return np.random.default_rng(seed).integers(60, 230, size=(height, width, 3), dtype=np.uint8)


def write_png(path: Path, height: int, width: int, channels: int = 3, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)
    return path


def write_broken_set(folder: Path) -> dict[str, str]:
    """A folder mixing good and broken inputs of each format; returns ``{file name: expected reason fragment}`` for
    the broken ones (good ones map to ``""``)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    write_png(folder / "good_a.png", 40, 56, seed=1)
    expected["good_a.png"] = ""
    Image.fromarray(rgb(48, 32, seed=2)).save(folder / "good_b.tif")
    expected["good_b.tif"] = ""
    Image.fromarray(rgb(36, 44, seed=3)).save(folder / "good_c.jpg", quality=95)
    expected["good_c.jpg"] = ""
    good = (folder / "good_a.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    expected["truncated.png"] = "truncated"
    (folder / "empty.png").write_bytes(b"")
    expected["empty.png"] = "empty file"
    (folder / "garbage.nii.gz").write_bytes(np.random.default_rng(0).bytes(600))
    expected["garbage.nii.gz"] = "not a NIfTI"
    (folder / "png_named.jpg").write_bytes(good)
    expected["png_named.jpg"] = "wrong file ending"
    (folder / "rgba.png").write_bytes(_png_bytes(np.dstack([rgb(32, 32, seed=4), np.full((32, 32), 255, np.uint8)])))
    expected["rgba.png"] = "RGBA"
    (folder / "grey.png").write_bytes(_png_bytes(rgb(32, 32, seed=5)[..., 0]))
    expected["grey.png"] = "grey image"
    vol = nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4))
    nib.save(vol, folder / "volume.nii.gz")
    expected["volume.nii.gz"] = "3D volume"
    (folder / "notes.txt").write_text("not an image")
    return expected


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_pyramid_tiff(path: Path, height: int = 1100, width: int = 1400, seed: int = 0) -> np.ndarray:
    """A 3-level pyramidal RGB TIFF (white background, a pink tissue blob with nuclei-like dots); returns level 0."""
    import tifffile

    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 244, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    blob = ((yy - height * 0.45) / (height * 0.25)) ** 2 + ((xx - width * 0.5) / (width * 0.18)) ** 2 < 1
    img[blob] = (np.array([215, 140, 185]) + rng.integers(-10, 10, size=(int(blob.sum()), 3))).astype(np.uint8)
    for _ in range(150):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        if blob[cy, cx]:
            d = (
                (yy[cy - 6 : cy + 6, cx - 6 : cx + 6] - cy) ** 2 + (xx[cy - 6 : cy + 6, cx - 6 : cx + 6] - cx) ** 2
            ) < 25
            img[cy - 6 : cy + 6, cx - 6 : cx + 6][d] = (90, 40, 140)
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), compression="zlib", resolution=(40000, 40000), resolutionunit="CENTIMETER")
        tw.write(img[::2, ::2], tile=(256, 256), compression="zlib", subfiletype=1)
        tw.write(img[::4, ::4], tile=(128, 128), compression="zlib", subfiletype=1)
    return img


def write_dicom_series(folder: Path, volume: np.ndarray, spacing=(0.7, 0.8, 2.5), origin=(-100.0, -120.0, 40.0)):
    """Write ``volume`` (x, y, z) int16 as an axial CT DICOM series (one file per slice) with pydicom."""
    return write_ct_slices(
        folder,
        [volume[:, :, k].T for k in range(volume.shape[2])],
        positions=[(origin[0], origin[1], origin[2] + k * spacing[2]) for k in range(volume.shape[2])],
        orientation=(1, 0, 0, 0, 1, 0),
        pixel_spacing=(spacing[1], spacing[0]),  # row spacing (y), column spacing (x)
        thickness=spacing[2],
        file_names=[f"s{k:03d}.dcm" for k in range(volume.shape[2])],
        patient_id="P1",
    )


def write_3d_bundle(root: Path, *, marker: Path | None = None) -> Path:
    """A tiny 3D CT bundle (MONAI BasicUNet, RAS + 1.5x1.5x2 mm resampling, Invertd) outside the collection.

    With ``marker``, the config's imports create that file when parsed (to show whether config code ran).
    """
    (root / "configs").mkdir(parents=True, exist_ok=True)
    imports = ["$import torch", "$import numpy"]
    if marker is not None:
        imports.append(f"$open({str(marker)!r}, 'w').close()")
    inference = {
        "imports": imports,
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "$torch.device('cpu')",
        "network_def": {
            "_target_": "monai.networks.nets.BasicUNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "features": [4, 4, 8, 8, 8, 4],
        },
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
                {
                    "_target_": "ScaleIntensityRanged",
                    "keys": "image",
                    "a_min": -200,
                    "a_max": 300,
                    "b_min": 0.0,
                    "b_max": 1.0,
                    "clip": True,
                },
                {"_target_": "EnsureTyped", "keys": "image"},
            ],
        },
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "nearest_interp": False,
                    "to_tensor": True,
                },
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "output_dir": "@output_dir",
                    "output_postfix": "seg",
                    "output_ext": ".nii.gz",
                    "output_dtype": "$numpy.uint8",
                    "separate_folder": False,
                    "resample": False,
                },
            ],
        },
    }
    metadata = {
        "version": "0.0.1",
        "changelog": {"0.0.1": "test bundle"},
        "task": "test CT segmentation",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": 1, "spatial_shape": [16, 16, 16]}},
            "outputs": {
                "pred": {
                    "type": "image",
                    "num_channels": 3,
                    "spatial_shape": [16, 16, 16],
                    "channel_def": {"0": "background", "1": "liver", "2": "spleen"},
                }
            },
        },
    }
    (root / "configs" / "inference.json").write_text(json.dumps(inference, indent=1))
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    return root


def ct_volume(shape=(30, 26, 9), seed: int = 0) -> np.ndarray:
    """A CT-like float volume (x, y, z) in HU: air around a soft-tissue body with a brighter organ."""
    rng = np.random.default_rng(seed)
    vol = np.full(shape, -1000.0, np.float32)
    x, y = np.mgrid[: shape[0], : shape[1]]
    body = ((x - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.4)) ** 2 < 1
    vol[body] = 40.0
    vol[shape[0] // 3 : shape[0] // 2, shape[1] // 3 : shape[1] // 2, :] = 120.0
    return vol + rng.normal(0, 5, size=shape).astype(np.float32)
