"""Fixtures shared by the bundle tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnseg_monai.bundle import list_bundles
from tests.bundles.helpers import checkout_tree, configs, copy_bundle, overrides, run_workflow, working_directory


@pytest.fixture(scope="session", params=list_bundles())
def bundle_copy(request, tmp_path_factory) -> tuple[str, Path]:
    """A private copy of the bundle (its models/, eval/ and data/ are written there), trained for one epoch with the
    tiny case's network from the filesystem root: the bundle finds its own folder (no bundle_root override)."""
    name = request.param
    root = copy_bundle(name, tmp_path_factory.mktemp(name))
    before = checkout_tree()
    with working_directory("/"):
        run_workflow(configs(root, "train.json"), root, "train", "training", **overrides(name, "train"))
    assert (root / "models" / "model.pt").is_file(), "the training of the copy wrote no model into the copy"
    assert checkout_tree() == before, "training a copy changed the checkout's bundles/"
    return name, root
