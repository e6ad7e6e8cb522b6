"""A tqdm progress bar for MONAI trainers and evaluators (ignite handler)."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

__all__ = ["ProgressHandler"]


def _loss_of(output: Any) -> dict[str, float]:
    """The loss of a MONAI trainer iteration (a dict, or a list of per-sample dicts after decollation)."""
    item = output[0] if isinstance(output, (list, tuple)) and output else output
    if isinstance(item, dict) and "loss" in item:
        return {"loss": float(item["loss"])}
    return {}


class ProgressHandler:
    """A tqdm progress bar over the iterations of each epoch, with the running loss for trainers.

    Args:
        show_loss: show the iteration loss (trainers); leave off for evaluators.
        persist: keep each epoch's finished bar on screen.
        desc: text before the bar (default: the engine's class name).
    """

    def __init__(self, show_loss: bool = True, persist: bool = False, desc: str | None = None) -> None:
        self.show_loss = show_loss
        self.persist = persist
        self.desc = desc

    def attach(self, engine: Engine) -> None:
        bar = ProgressBar(persist=self.persist, desc=self.desc or type(engine).__name__)
        bar.attach(
            engine,
            output_transform=_loss_of if self.show_loss else None,
            event_name=Events.ITERATION_COMPLETED,
            closing_event_name=Events.EPOCH_COMPLETED,
        )
