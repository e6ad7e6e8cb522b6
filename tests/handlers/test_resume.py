"""Resumption, atomic checkpoints and the NaN stop, on a tiny in-process MONAI training (UNet + EMA + random crops)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from attnseg_monai.handlers.checkpoint import (
    AtomicCheckpointSaver,
    NonFiniteLossError,
    find_resume_checkpoint,
    resume_checkpoint,
)
from attnseg_monai.io.checkpoint import CheckpointReadError, load_checkpoint_file
from tests.handlers.helpers import Killed, build_trainer


def _run(trainer) -> None:
    try:
        trainer.run()
    except Killed:
        pass


def _merge(killed: list, resumed: list) -> list:
    return [x for x in killed if x[0] < resumed[0][0]] + resumed


def test_resumed_loss_curve_and_weights_match_uninterrupted(tmp_path: Path):
    full_trainer, full, full_objs = build_trainer(tmp_path / "full")
    full_trainer.run()
    assert len(full) == 16  # 4 epochs x 4 iterations

    trainer, killed, _ = build_trainer(tmp_path / "run", kill_at_iteration=10)  # mid-epoch 3
    _run(trainer)
    ckpt = find_resume_checkpoint(tmp_path / "run")
    assert ckpt is not None and Path(ckpt).name == "checkpoint_epoch=2.pt"  # the mid-epoch "final" one is skipped
    trainer, resumed, objs = build_trainer(tmp_path / "run", checkpoint=ckpt)
    trainer.run()
    assert resumed[0][0] == 9 and trainer.state.epoch == 4
    merged = _merge(killed, resumed)
    assert [i for i, _ in merged] == [i for i, _ in full]
    assert max(abs(a - b) for (_, a), (_, b) in zip(merged, full)) <= 1e-6
    for key in ("online_model", "model"):  # online weights and EMA weights
        for a, b in zip(objs[key].state_dict().values(), full_objs[key].state_dict().values()):
            assert torch.allclose(a, b, atol=1e-6)
    assert objs["optimizer"].param_groups[0]["lr"] == pytest.approx(full_objs["optimizer"].param_groups[0]["lr"])


def test_without_random_states_the_curve_differs(tmp_path: Path, monkeypatch):
    """Control: restoring only weights, optimiser and position (MONAI's CheckpointLoader) does not replay the run."""
    import attnseg_monai.handlers.training as training

    full_trainer, full, _ = build_trainer(tmp_path / "full")
    full_trainer.run()
    trainer, killed, _ = build_trainer(tmp_path / "run", kill_at_iteration=10)
    _run(trainer)
    monkeypatch.setattr(training, "restore_rng_state", lambda state, dataloader=None: None)
    trainer, resumed, _ = build_trainer(tmp_path / "run", checkpoint=find_resume_checkpoint(tmp_path / "run"))
    trainer.run()
    merged = _merge(killed, resumed)
    assert max(abs(a - b) for (_, a), (_, b) in zip(merged, full)) > 1e-4


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path: Path):
    trainer, losses, objs = build_trainer(tmp_path, nan_at_iteration=6)  # epoch 2
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, iteration 6"):
        trainer.run()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["checkpoint_epoch=1.pt"], files  # no NaN final checkpoint, epoch 1 kept
    saved = load_checkpoint_file(tmp_path / "checkpoint_epoch=1.pt")
    assert all(torch.isfinite(t).all() for t in saved["online_model"].values())
    assert saved["training_state"]["engine"]["iteration"] == 4
    assert any(not torch.isfinite(p).all() for p in objs["online_model"].parameters())  # the model did diverge


def test_saver_refuses_non_finite_weights(tmp_path: Path):
    net = torch.nn.Linear(2, 2)
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="final.pt")
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    assert saver._atomic_save_func({"model": net.state_dict()}, tmp_path / "x.pt", torch.save) is False
    assert not (tmp_path / "x.pt").exists()


def test_failed_write_leaves_previous_checkpoint_and_no_temporary(tmp_path: Path):
    from attnseg_monai.io.atomic import atomic_torch_save

    target = tmp_path / "checkpoint_epoch=1.pt"
    atomic_torch_save({"w": torch.ones(3)}, target)

    def failing_save(obj, fh):
        fh.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"w": torch.zeros(3)}, target, save=failing_save)
    assert torch.equal(load_checkpoint_file(target)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_truncated_empty_and_weights_only_checkpoints_are_skipped(tmp_path: Path):
    trainer, _, _ = build_trainer(tmp_path, max_epochs=2)
    trainer.run()
    good = tmp_path / "checkpoint_epoch=2.pt"
    data = good.read_bytes()
    # a newer-looking but truncated file (a crash of a non-atomic writer), an empty one, a weights-only model.pt
    (tmp_path / "checkpoint_epoch=9.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "checkpoint_epoch=8.pt").write_bytes(b"")
    torch.save({"model": {"w": torch.ones(1)}}, tmp_path / "model.pt")
    (tmp_path / ".checkpoint_epoch=3.pt.123-abcd.tmp").write_bytes(data)
    with pytest.raises(CheckpointReadError, match=r"checkpoint_epoch=9.pt: truncated or corrupt"):
        load_checkpoint_file(tmp_path / "checkpoint_epoch=9.pt")
    with pytest.raises(CheckpointReadError, match="empty"):
        load_checkpoint_file(tmp_path / "checkpoint_epoch=8.pt")
    assert find_resume_checkpoint(tmp_path) in (str(good), str(tmp_path / "model_final.pt"))
    assert load_checkpoint_file(find_resume_checkpoint(tmp_path))["training_state"]["engine"]["iteration"] == 8


def test_resume_flags(tmp_path: Path):
    assert resume_checkpoint(tmp_path, False) is None
    assert resume_checkpoint(tmp_path, "false") is None
    assert resume_checkpoint(tmp_path, "true") is None  # nothing there yet: start from scratch
    with pytest.raises(ValueError, match="resume must be true or false"):
        resume_checkpoint(tmp_path, "maybe")
    with pytest.raises(CheckpointReadError, match="not found"):
        resume_checkpoint(tmp_path, False, resume_from=str(tmp_path / "nope.pt"))
    trainer, _, _ = build_trainer(tmp_path, max_epochs=1)
    trainer.run()
    assert resume_checkpoint(tmp_path, True) is not None
    assert os.path.basename(resume_checkpoint(tmp_path, False, tmp_path / "checkpoint_epoch=1.pt")) == (
        "checkpoint_epoch=1.pt"
    )
