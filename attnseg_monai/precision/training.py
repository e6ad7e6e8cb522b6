"""bfloat16 autocast for MONAI's ``SupervisedTrainer`` on CPUs (and GPUs) that compute bf16 natively.

MONAI 1.6's ``SupervisedTrainer(amp=True)`` always enters ``torch.autocast("cuda")`` with a CUDA ``GradScaler``, so on
a CPU it changes nothing. :class:`AutocastIteration` is an ``iteration_update`` that runs the trainer's own iteration
(forward, loss, backward, optimiser step, events) inside ``torch.autocast(<the trainer's device type>, bfloat16)``.
bfloat16 has float32's exponent range, so no gradient scaling is needed. Whether it pays depends on the network
and the CPU: ``benchmarks/bench_speed.py`` measures the step time of every bundle's recipe both ways.
"""

from __future__ import annotations

from typing import Any

import torch

from .policy import resolve_policy

__all__ = ["AutocastIteration"]

_TRAIN_PRECISIONS = ("auto", "fp32", "bf16")


class AutocastIteration:
    """``SupervisedTrainer(iteration_update=AutocastIteration("auto"))``: the trainer's iteration under bf16 autocast.

    Args:
        precision: ``"auto"`` (bf16 where the device computes it natively: CPUs with AMX/AVX-512 BF16, GPUs of compute
            capability 8.0+; float32 elsewhere), ``"bf16"`` (always) or ``"fp32"`` (no autocast).

    Raises:
        ValueError: on another ``precision`` (float16 training needs gradient scaling: use ``amp=True`` on CUDA).

    Example (bundle ``train.json``)::

        "train#trainer#iteration_update": {"_target_": "attnseg_monai.precision.AutocastIteration", "precision": "auto"}
    """

    def __init__(self, precision: str = "auto") -> None:
        if precision not in _TRAIN_PRECISIONS:
            raise ValueError(
                f"training precision must be one of {_TRAIN_PRECISIONS}, got {precision!r} "
                "(for float16 on CUDA use SupervisedTrainer(amp=True), which scales the gradients)."
            )
        self.precision = precision
        self._enabled: dict[str, bool] = {}

    def enabled_for(self, device: torch.device) -> bool:
        """Whether autocast is on for ``device``."""
        if device.type not in self._enabled:
            if self.precision == "auto":
                on = resolve_policy("auto", device).name == "bf16"
            else:
                on = self.precision == "bf16"
            self._enabled[device.type] = on
        return self._enabled[device.type]

    def __call__(self, engine: Any, batchdata: Any) -> Any:
        device = torch.device(getattr(engine.state, "device", None) or "cpu")
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.enabled_for(device)):
            return engine._iteration(engine, batchdata)
