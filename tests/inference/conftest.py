"""Fixtures for the inference tests: a tiny hannet with a checkpoint made here, a tiny outside 3D bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnseg_monai.inference import BundlePredictor, load_bundle

from .helpers import save_tiny_hannet_checkpoint, tiny_hannet_predictor, write_3d_bundle


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this folder on one intra-op thread (``tests/conftest.py``)."""
    yield


@pytest.fixture(scope="session")
def hannet_checkpoint(tmp_path_factory) -> Path:
    """Weights of a freshly built tiny hannet (the network the overrides describe)."""
    torch.manual_seed(0)
    return save_tiny_hannet_checkpoint(tmp_path_factory.mktemp("ckpt") / "hannet_tiny.pt")


@pytest.fixture
def make_predictor(hannet_checkpoint):
    """``make_predictor(**model_settings)``: a BundlePredictor on the tiny hannet (CPU by default); run settings go to
    ``predict_files`` (``QUIET``: no reader processes, no bars)."""

    def factory(**settings) -> BundlePredictor:
        return tiny_hannet_predictor(hannet_checkpoint, **settings)

    return factory


@pytest.fixture(scope="session")
def bundle3d(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny outside 3D bundle folder and a checkpoint for it."""
    root = write_3d_bundle(tmp_path_factory.mktemp("b3d") / "ct_tiny")
    torch.manual_seed(0)
    parts = load_bundle(root, trust_bundle=True, load_weights=False)
    ckpt = root / "models" / "model.pt"
    ckpt.parent.mkdir(exist_ok=True)
    torch.save(parts.network.state_dict(), ckpt)
    return root, ckpt
