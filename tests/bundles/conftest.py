"""Fixtures shared by the bundle tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnseg_monai.bundle import list_bundles
from tests.bundles.helpers import configs, copy_bundle, overrides, run_workflow, working_directory


@pytest.fixture(scope="session", params=list_bundles())
def bundle_copy(request, tmp_path_factory) -> tuple[str, Path]:
    """A private copy of the bundle (its models/, eval/ and data/ are written there), trained for one epoch with the
    tiny case's network from the filesystem root: the bundle finds its own folder (no bundle_root override)."""
    name = request.param
    root = copy_bundle(name, tmp_path_factory.mktemp(name))
    with working_directory("/"):
        run_workflow(configs(root, "train.json"), root, "train", "training", **overrides(name, "train"))
    return name, root
