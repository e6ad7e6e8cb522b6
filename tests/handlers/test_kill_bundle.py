"""SIGKILL a real bundle training (hannet, tiny) in the middle of a checkpoint write, resume it, compare the curves."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnseg_monai.bundle import BUNDLES_DIR
from attnseg_monai.handlers.checkpoint import find_resume_checkpoint
from attnseg_monai.io.checkpoint import load_checkpoint_file
from tests.handlers.train_bundle import run_training

SCRIPT = Path(__file__).with_name("train_bundle.py")
REPO = Path(__file__).resolve().parents[2]
# tiny hannet (tests/bundles/cases/hannet.py widths), 2 epochs of 5 iterations, no validation (not needed here)
TINY = {
    "network_def#features": [4, 8, 16, 32, 64],
    "quick_epochs": 2,
    "val_interval": 100,
    "train_patch_size": [64, 64],
    "roi_size": [64, 64],
}


def _losses(path: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in path.read_text().splitlines():
        iteration, loss = line.split()
        out[int(iteration)] = float(loss)
    return out


@pytest.mark.timeout(600)
def test_hannet_killed_during_checkpoint_write_resumes_to_the_same_curve(tmp_path: Path):
    root = BUNDLES_DIR / "hannet"
    killed = {**TINY, "ckpt_dir": str(tmp_path / "killed" / "models"), "output_dir": str(tmp_path / "killed" / "eval")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), str(tmp_path / "killed.txt"), json.dumps(killed)]
        + ["--kill-during-save", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ckpt_dir = Path(killed["ckpt_dir"])
    names = sorted(p.name for p in ckpt_dir.iterdir())
    # epoch 1 complete (kept although n_saved=1: ignite deletes the old file before writing the new one, we defer
    # that); epoch 2 only as a half-written hidden temporary file
    assert "checkpoint_epoch=1.pt" in names and not any(n.startswith("checkpoint_epoch=2") for n in names), names
    assert any(n.startswith(".checkpoint_epoch=2.pt.") and n.endswith(".tmp") for n in names), names
    assert Path(find_resume_checkpoint(ckpt_dir)).name == "checkpoint_epoch=1.pt"

    # resume in this process with the documented override (`--resume true`)
    run_training(root, tmp_path / "resumed.txt", {**killed, "resume": True})
    assert not any(p.name.endswith(".tmp") for p in ckpt_dir.iterdir())  # the temporary file is cleaned up

    # the killed process ran epochs 1 and 2 uninterrupted (it died while saving epoch 2): its curve is the reference
    reference, after = _losses(tmp_path / "killed.txt"), _losses(tmp_path / "resumed.txt")
    per_epoch = len(reference) // 2
    assert per_epoch >= 2 and sorted(reference) == list(range(1, 2 * per_epoch + 1))
    assert sorted(after) == list(range(per_epoch + 1, 2 * per_epoch + 1))  # resumed at epoch 2
    for iteration, loss in after.items():
        assert abs(loss - reference[iteration]) <= 1e-6, (iteration, loss, reference[iteration])
    final = load_checkpoint_file(ckpt_dir / "model_final.pt")
    assert final["training_state"]["engine"]["iteration"] == 2 * per_epoch
    assert all(torch.isfinite(v).all() for v in final["model"].values())
