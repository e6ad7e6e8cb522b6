"""Loading bundles and checkpoints safely: outside bundles need trust, pickles that run code are refused."""

from __future__ import annotations

import pathlib
import shutil

import pytest
import torch

from attnseg_monai.bundle import BUNDLES_DIR
from attnseg_monai.inference import (
    BundleError,
    BundlePredictor,
    CheckpointError,
    UntrustedBundleError,
    load_bundle,
    load_checkpoint,
    resolve_bundle,
)

from .helpers import HANNET_OVERRIDES, UNTRAINED, write_3d_bundle


def test_collection_bundles_resolve_by_name_and_folder():
    root, name, trusted = resolve_bundle("hannet")
    assert trusted and name == "hannet" and root == (BUNDLES_DIR / "hannet").resolve()
    assert resolve_bundle(BUNDLES_DIR / "hannet")[2]
    with pytest.raises(BundleError, match="hannet"):
        resolve_bundle("no_such_bundle")


def test_outside_bundle_is_refused_before_any_config_code_runs(tmp_path):
    marker = tmp_path / "config_code_ran"
    root = write_3d_bundle(tmp_path / "downloaded", marker=marker)
    with pytest.raises(UntrustedBundleError, match="trust_bundle"):
        BundlePredictor(device="cpu").from_bundle(root)
    assert not marker.exists()
    # a copy of a collection bundle elsewhere is an outside bundle too
    copy = tmp_path / "hannet"
    shutil.copytree(BUNDLES_DIR / "hannet", copy, ignore=shutil.ignore_patterns("models", "eval", "data"))
    with pytest.raises(UntrustedBundleError):
        load_bundle(copy, load_weights=False)
    # with the flag, its code runs (that is what trusting means)
    load_bundle(root, trust_bundle=True, load_weights=False)
    assert marker.exists()


class _Payload:
    """Unpickling this would create a file: the shape of a malicious checkpoint."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def test_malicious_pickle_checkpoint_is_refused_not_executed(tmp_path):
    parts = load_bundle("hannet", load_weights=False, checkpoint=UNTRAINED, overrides=HANNET_OVERRIDES)
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    torch.save({"model": parts.network.state_dict(), "extra": _Payload(str(marker))}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(evil, parts.network)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        BundlePredictor(device="cpu").from_bundle("hannet", checkpoint=evil, overrides=HANNET_OVERRIDES)
    assert not marker.exists()


def test_checkpoint_formats_and_mismatches(tmp_path):
    parts = load_bundle("hannet", load_weights=False, checkpoint=UNTRAINED, overrides=HANNET_OVERRIDES)
    state = parts.network.state_dict()
    # MONAI CheckpointSaver with several objects, and DDP's module. prefix
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}}, tmp_path / "final.pt")
    assert len(load_checkpoint(tmp_path / "final.pt", parts.network)) == 64
    wide = load_bundle(
        "hannet", load_weights=False, checkpoint=UNTRAINED, overrides={"network_def#features": [8, 8, 16, 32, 64]}
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "final.pt", wide.network)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "garbage.pt", parts.network)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt", parts.network)
