"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def openvino_cache(tmp_path_factory):
    """The session's own folder of converted OpenVINO models (``$ATTNSEG_OPENVINO_CACHE``, also seen by the command
    lines the tests start): the suite never writes into the user's ``~/.cache`` and starts from an empty cache."""
    folder = tmp_path_factory.mktemp("openvino_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNSEG_OPENVINO_CACHE", str(folder))
        yield folder


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny networks gain nothing from two, and other jobs on the machine make threads wait.

    Modules that want it for every test say ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> Callable[[str], Path]:
    """``trained_bundle(name)``: the session's one private copy of a bundle (its models/, eval/ and data/ are written
    there), trained for one epoch with the tiny case's network from the filesystem root, so the bundle finds its own
    folder (no bundle_root override). Trained on first use; every test that needs a trained bundle shares it."""
    from tests.bundles.helpers import checkout_tree, configs, copy_bundle, overrides, run_workflow, working_directory

    trained: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in trained:
            root = copy_bundle(name, tmp_path_factory.mktemp(name))
            before = checkout_tree()
            with working_directory("/"):
                run_workflow(configs(root, "train.json"), root, "train", "training", **overrides(name, "train"))
            assert (root / "models" / "model.pt").is_file(), "the training of the copy wrote no model into the copy"
            assert checkout_tree() == before, "training a copy changed the checkout's bundles/"
            trained[name] = root
        return trained[name]

    return get
