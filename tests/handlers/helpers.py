"""A tiny MONAI training (2D UNet with dropout, random crops/flips/noise, EMA) to test resumption in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from ignite.handlers import EMAHandler
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped, RandFlipd, RandGaussianNoised, RandSpatialCropSamplesd
from monai.utils import set_determinism

from attnseg_monai.handlers.checkpoint import AtomicCheckpointSaver
from attnseg_monai.handlers.training import ResumableTraining

__all__ = ["Killed", "build_trainer"]


class Killed(BaseException):
    """Stands for a kill of the process in the in-process tests (not an Exception: nothing catches it as one)."""


def build_trainer(
    ckpt_dir: Path,
    *,
    checkpoint: str | None = None,
    max_epochs: int = 4,
    kill_at_iteration: int | None = None,
    nan_at_iteration: int | None = None,
    workers: int = 0,
) -> tuple[SupervisedTrainer, list[tuple[int, float]], dict[str, Any]]:
    """A fresh trainer (new process state: seed 0), the list its per-iteration losses go to, and its objects."""
    set_determinism(seed=0)
    rng = np.random.default_rng(1)
    data = [
        {
            "image": rng.random((1, 16, 16), dtype=np.float32),
            "label": (rng.random((1, 16, 16)) > 0.6).astype(np.float32),
        }
        for _ in range(12)
    ]
    keys = ["image", "label"]
    transform = Compose(
        [
            RandSpatialCropSamplesd(keys, roi_size=(8, 8), num_samples=2, random_size=False),
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandGaussianNoised("image", prob=0.5, std=0.05),
            EnsureTyped(keys, track_meta=False),
        ]
    )
    dataset = CacheDataset(data, transform, progress=False)
    loader = DataLoader(dataset, batch_size=3, shuffle=True, num_workers=workers)
    net = UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0, dropout=0.2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.8)
    ema = EMAHandler(net, momentum=0.1, momentum_warmup=0.5, warmup_iters=5)
    objects = {"model": ema.ema_model, "online_model": net, "optimizer": optimizer, "lr_scheduler": scheduler}
    state = ResumableTraining(objects, checkpoint=checkpoint, dataloader=loader)
    saver = AtomicCheckpointSaver(
        str(ckpt_dir),
        {**objects, "training_state": state},
        save_interval=1,
        n_saved=1,
        save_final=True,
        final_filename="model_final.pt",
    )
    base_loss = DiceCELoss(to_onehot_y=True, softmax=True)
    losses: list[tuple[int, float]] = []

    def loss_function(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        loss = base_loss(pred, label)
        if nan_at_iteration is not None and trainer.state.iteration == nan_at_iteration:
            loss = loss * float("nan")
        return loss

    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=net,
        optimizer=optimizer,
        loss_function=loss_function,
        train_handlers=[state, ema, LrScheduleHandler(scheduler, print_lr=False), saver],
    )

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine: SupervisedTrainer) -> None:
        losses.append((engine.state.iteration, float(engine.state.output[0]["loss"])))
        if kill_at_iteration is not None and engine.state.iteration == kill_at_iteration:
            raise Killed(f"killed at iteration {kill_at_iteration}")

    return trainer, losses, {**objects, "state": state, "ema": ema, "loader": loader}
