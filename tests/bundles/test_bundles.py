"""Every bundle through MONAI's own checks and its real workflows on tiny data.

MONAI's checks: ``verify_net_in_out``, ``ckpt_export`` (TorchScript), ``ConfigWorkflow.check_properties`` for train
and infer; then a one-epoch training, inference and evaluation in a copy of the bundle, the written masks' geometry.
The 2-process gloo runs of ``multi_gpu_train.json`` are in test_distributed.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_net_in_out
from PIL import Image

from attnseg_monai.bundle import BUNDLES_DIR, list_bundles
from tests.bundles.cases import BUNDLE_CASES
from tests.bundles.helpers import checkout_tree, configs, overrides, run_workflow, working_directory

BUNDLES = list_bundles()
REQUIRED_FILES = [
    "configs/train.json",
    "configs/inference.json",
    "configs/evaluate.json",
    "configs/multi_gpu_train.json",
    "configs/metadata.json",
    "configs/logging.conf",
    "docs/README.md",
    "docs/data_license.txt",
    "LICENSE",
]


def _configs(root: Path, *names: str) -> list[str]:
    return configs(root, *names)


def _overrides(name: str, kind: str, root: Path, **extra) -> dict:
    return overrides(name, kind, root, **extra)


def _run(config_files: list[str], root: Path, workflow_type: str, run_id: str, **kw) -> ConfigWorkflow:
    return run_workflow(config_files, root, workflow_type, run_id, **kw)


def test_collection_has_the_bundles_and_cases():
    assert {"hannet"} <= set(BUNDLES), "the README main job trains hannet"
    assert set(BUNDLES) <= set(BUNDLE_CASES), f"bundles without a test case: {set(BUNDLES) - set(BUNDLE_CASES)}"


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_files_and_metadata(name: str):
    root = BUNDLES_DIR / name
    for rel in REQUIRED_FILES:
        assert (root / rel).is_file(), f"{name}: missing {rel}"
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version", "task", "description"):
        assert meta.get(key), f"{name}: metadata lacks {key}"
    assert meta["version"] in meta["changelog"]
    assert "attnseg-monai" in meta["required_packages_version"]
    fmt = meta["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    train = json.loads((root / "configs" / "train.json").read_text())
    dims = train["network_def"]["spatial_dims"]
    assert len(image["spatial_shape"]) == dims and len(pred["spatial_shape"]) == dims
    assert image["num_channels"] == train["network_def"]["in_channels"]
    assert pred["channel_def"]["0"] == "background" and len(pred["channel_def"]) == pred["num_channels"]
    assert train["network_def"]["_target_"] == "attnseg_monai.bundle.build_network"
    assert train["network_def"]["network"].startswith("attnseg_monai.networks.nets.")


@pytest.mark.parametrize("name", BUNDLES)
def test_check_properties(name: str, tmp_path):
    root = tmp_path / name
    shutil.copytree(BUNDLES_DIR / name, root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    for files, kind in ((["train.json"], "train"), (["inference.json"], "infer")):
        wf = ConfigWorkflow(
            config_file=_configs(root, *files),
            meta_file=str(root / "configs" / "metadata.json"),
            logging_file=False,
            workflow_type=kind,
            **_overrides(name, "train" if kind == "train" else "infer", root),
        )
        wf.initialize()
        assert wf.check_properties() == [], f"{name} {files}: missing properties"


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_net_in_out(name: str):
    root = BUNDLES_DIR / name
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(root / "configs" / "inference.json"),
        device="cpu",
        n=4,
        p=1,
        any=1,
        **{k: v for k, v in BUNDLE_CASES[name]["net"].items()},
    )


def test_train_writes_checkpoint_and_metrics(bundle_copy):
    name, root = bundle_copy
    assert (root / "models" / "model.pt").is_file()
    assert (root / "models" / "model_final.pt").is_file()
    metrics = (root / "eval" / "metrics.csv").read_text()
    assert "val_mean_dice" in metrics
    datalist = json.loads((root / "eval" / "datalist.json").read_text())
    assert datalist["training"] and datalist["validation"]
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert any(k.endswith("weight") for k in state)


def test_ckpt_export_to_torchscript(bundle_copy, tmp_path):
    name, root = bundle_copy
    out = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(out),
        ckpt_file=str(root / "models" / "model.pt"),
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(root / "configs" / "inference.json"),
        bundle_root=str(root),
        **BUNDLE_CASES[name]["net"],
    )
    scripted = torch.jit.load(str(out))
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    image = meta["network_data_format"]["inputs"]["image"]
    x = torch.rand(1, image["num_channels"], *([64] * len(image["spatial_shape"])))
    y = scripted.eval()(x)
    assert y.shape == (1, meta["network_data_format"]["outputs"]["pred"]["num_channels"], *x.shape[2:])


def test_inference_and_evaluation(bundle_copy):
    """Inference and evaluation from the bundle's parent folder with a relative --config_file and no bundle_root or
    network overrides: the bundle finds itself and builds the network recorded beside the tiny checkpoint."""
    name, root = bundle_copy
    case = BUNDLE_CASES[name]
    rel = Path(root.name)
    before = checkout_tree()
    with working_directory(root.parent):
        run_workflow(configs(rel, "inference.json"), rel, "infer", "run", **overrides(name, "infer", net=False))
    predictions = root / "eval" / "predictions"
    written = sorted(predictions.iterdir())
    assert written, "inference wrote nothing"
    for suffix in case["outputs"]:
        assert any(p.stem.endswith(suffix) for p in written), f"no '{suffix}' outputs"
    with working_directory(root.parent):
        run_workflow(
            configs(rel, "inference.json", "evaluate.json"),
            rel,
            "infer",
            "evaluating",
            **overrides(name, "infer", net=False),
        )
    assert "mean_dice" in (root / "eval" / "evaluation" / "metrics.csv").read_text()
    assert checkout_tree() == before, "inference or evaluation of a copy changed the checkout's bundles/"


def test_written_masks_keep_size_orientation_and_labels(bundle_copy, tmp_path):
    name, root = bundle_copy
    case = BUNDLE_CASES[name]
    if not case["inputs"]:
        pytest.skip(f"{name}: 3D geometry is checked by the bundle's own round-trip tests")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w, c, ext) in enumerate(case["inputs"]):
        pixels = rng.integers(0, 255, size=(h, w, c) if c > 1 else (h, w), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"case{i}{ext}")
    out = tmp_path / "out"
    _run(
        _configs(root, "inference.json"),
        root,
        "infer",
        "run",
        **_overrides(name, "infer", root, dataset_dir=str(inputs), output_dir=str(out)),
    )
    for i, (h, w, _, _) in enumerate(case["inputs"]):
        for suffix in case["outputs"]:
            mask = np.asarray(Image.open(out / f"case{i}_{suffix}{case['output_ext']}"))
            assert mask.shape == (h, w), f"{suffix} mask of case{i}: {mask.shape} != {(h, w)}"
            if suffix in case["max_label"]:
                assert mask.min() >= 0 and mask.max() <= case["max_label"][suffix]
