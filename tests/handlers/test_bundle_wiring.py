"""The bundles' train.json wire the reliability pieces the same way (read as JSON: nothing is executed)."""

from __future__ import annotations

import json

import pytest

from attnseg_monai.bundle import BUNDLES_DIR

#: bundles wired so far; add a bundle here once its train.json carries the pattern (docs/reliability.md)
WIRED = ["hannet", "mcsa_unet", "danie", "focal_attn_unet", "attention_unet"]
SAVER = "attnseg_monai.handlers.AtomicCheckpointSaver"


def _savers(node, out):
    if isinstance(node, dict):
        if "CheckpointSaver" in str(node.get("_target_", "")):
            out.append(node)
        for value in node.values():
            _savers(value, out)
    elif isinstance(node, list):
        for value in node:
            _savers(value, out)
    return out


@pytest.mark.parametrize("name", WIRED)
def test_train_config_wiring(name: str):
    configs = BUNDLES_DIR / name / "configs"
    config = json.loads((configs / "train.json").read_text())
    assert "$import attnseg_monai.handlers" in config["imports"]
    assert config["resume"] is False and config["resume_from"] is None
    reliability = config["train"]["reliability"]
    assert reliability["_target_"] == "attnseg_monai.handlers.ResumableTraining"
    assert reliability["checkpoint"] == "$attnseg_monai.handlers.resume_checkpoint(@ckpt_dir, @resume, @resume_from)"
    assert reliability["dataloader"] == "@train#dataloader"
    assert config["train"]["trainer"]["train_handlers"].startswith("$[@train#reliability")
    assert isinstance(config["train"]["handlers"], list)  # MONAI Label inserts its CheckpointLoader into this list
    savers = _savers(config, [])
    assert savers and all(s["_target_"] == SAVER for s in savers)
    trainer_saver = next(s for s in config["train"]["handlers"] if s.get("_target_") == SAVER)
    assert trainer_saver["save_dict"]["training_state"] == "@train#reliability"
    restored = {k: v for k, v in trainer_saver["save_dict"].items() if k != "training_state"}
    assert reliability["load_dict"] == restored  # everything saved is restored
    multi = json.loads((configs / "multi_gpu_train.json").read_text())
    assert multi["train#trainer#train_handlers"].startswith("$[@train#reliability")  # every rank resumes
