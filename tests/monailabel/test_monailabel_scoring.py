"""MONAI Label's active learning with the bundles: epistemic scoring in the real server (``monaibundle`` app).

Started with ``--conf epistemic_model <bundle>``, the stock app builds the bundle's inference with
``network_def#dropout`` = 0.2 (Monte Carlo dropout: the bundles then sample with dropout only and end in class
probabilities), runs it ``epistemic_simulation_size`` times per unlabelled image in train mode, and stores the entropy
of the averaged probabilities, averaged over the image, as ``epistemic_entropy`` in the datastore
(``monailabel/tasks/scoring/epistemic_v2.py``). ``POST /scoring/<bundle>`` must complete for every bundle and give
every image a finite score.

For one 2D bundle (hannet, nuclei tiles) and one bundle served whole CT volumes (danie: its slice-wise network is
sampled over every slice and the score averages the volume), a model trained here for a few seconds on the bundle's
own embedded sample scores the clean training images and one deliberately corrupted copy; the corrupted study must
rank first. The corruptions are ones the scoring can see: strong noise on a nuclei tile, a ghosting artefact (the CT
overlaid with itself shifted by 8 voxels, as patient motion leaves it). docs/monailabel.md says which corruptions it
cannot see (a model that confidently calls a corrupted CT background scores it *lower*: measured on attention_unet).

Server start-up, the tiny bundle copies and the studies come from ``test_monailabel_server``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "monailabel", reason="monailabel is not installed (bash scripts/install_monailabel.sh installs it; CI does)"
)

import nibabel as nib  # noqa: E402
from PIL import Image  # noqa: E402

from tests.bundles.helpers import configs, copy_bundle, overrides, run_workflow, working_directory  # noqa: E402
from tests.monailabel.test_monailabel_server import (  # noqa: E402
    BUNDLES,
    _copy_tiny_bundle,
    _full_ext,
    _installed_sample_app,
    _start,
    _stop,
    _training_items,
)

pytestmark = pytest.mark.slow

SAMPLES = 4  # epistemic_simulation_size: Monte Carlo samples per image
SCORING_TIMEOUT_S = 600.0


def _noisy_tile(src: Path, dest: Path) -> None:
    """An RGB tile with Gaussian noise of standard deviation 60 grey levels."""
    image = np.asarray(Image.open(src)).astype(np.float32)
    noisy = image + np.random.default_rng(0).normal(0.0, 60.0, image.shape)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(dest)


def _ghosted_volume(src: Path, dest: Path) -> None:
    """The CT overlaid with itself shifted by 8 voxels along the second axis (voxel-wise maximum): a ghost."""
    image = nib.load(str(src))
    volume = np.asarray(image.dataobj, dtype=np.float32)
    ghost = np.maximum(volume, np.roll(volume, 8, axis=1))
    nib.save(nib.Nifti1Image(ghost, image.affine), str(dest))


#: bundle -> (training overrides on its embedded sample, how the corrupted study is made). hannet's tiny network
#: learns at 5x the recipe's learning rate in 20 epochs what it learns at the recipe's in 40 (measured: the corrupted
#: tile scores 0.69 against at most 0.35 for the clean ones; 40 epochs at 0.001: 0.97 against at most 0.91)
RANKED: dict[str, tuple[dict[str, Any], Callable[[Path, Path], None]]] = {
    "hannet": ({"quick_epochs": 20, "val_interval": 20, "learning_rate": 0.005}, _noisy_tile),
    "danie": ({"quick_epochs": 60, "val_interval": 60}, _ghosted_volume),
}


def _train(name: str, parent: Path, settings: dict[str, Any]) -> Path:
    """The bundle's own training workflow on its embedded sample with the tiny case's sizes; returns models/."""
    root = copy_bundle(name, parent)
    extra = overrides(name, "train", **settings)
    with working_directory(root):
        run_workflow(configs(root, "train.json"), root, "train", "training", **extra)
    return root / "models"


@pytest.mark.parametrize("name", BUNDLES)
def test_epistemic_scoring_scores_every_image(name: str, tmp_path: Path):
    root = tmp_path / "monailabel"
    app = root / "apps" / "monaibundle"
    shutil.copytree(_installed_sample_app(), app, ignore=shutil.ignore_patterns("__pycache__", "logs", "model"))
    studies = root / "studies"
    studies.mkdir(parents=True)
    bundle = app / "model" / name
    _copy_tiny_bundle(name, bundle)
    if name in RANKED:
        settings, corrupt = RANKED[name]
        models = _train(name, tmp_path / "trained", settings)
        for file in ("model.pt", "model.record.json"):
            shutil.copy(models / file, bundle / "models" / file)
    clean = []
    for item in _training_items(bundle):
        image = Path(item["image"])
        clean.append(image.name[: -len(_full_ext(image))])
        shutil.copy(image, studies / image.name)
    corrupted = None
    if name in RANKED:
        first = next(p for p in sorted(studies.iterdir()))
        corrupted = "corrupted_" + first.name[: -len(_full_ext(first))]
        corrupt(first, studies / f"{corrupted}{_full_ext(first)}")

    conf = {"epistemic_model": name, "epistemic_simulation_size": str(SAMPLES)}
    server = _start(root, app, studies, {}, "server.log", models=[name], conf=conf)
    try:
        response = server.client.post(
            f"/scoring/{name}",
            params={"run_sync": True},
            json={"device": "cpu", "max_workers": 1},
            timeout=SCORING_TIMEOUT_S,
        )
        assert response.status_code == 200, f"{response.text}\n{server.log_tail()}"
        summary = response.json()
        expected = len(clean) + (corrupted is not None)
        assert summary["executed"] == expected, f"{summary}\n{server.log_tail()}"
        objects = server.client.get("/datastore/", params={"output": "all"}).json()["objects"]
        scores = {key: value["image"]["info"].get("epistemic_entropy") for key, value in objects.items()}
    finally:
        server.client.close()
        _stop(server.process)
    assert len(scores) == expected and all(
        isinstance(s, float) and math.isfinite(s) and s > 0 for s in scores.values()
    ), scores
    if corrupted is not None:
        ranking = sorted(scores, key=scores.get, reverse=True)
        assert ranking[0] == corrupted, f"{name}: the corrupted study is not the most uncertain: {scores}"
