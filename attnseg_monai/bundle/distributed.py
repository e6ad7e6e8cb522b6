"""What ``multi_gpu_train.json`` calls: the device of this process, and the handlers each rank runs.

Handlers are chosen by what they are, never by their position in a list: MONAI Label inserts a ``CheckpointLoader`` at
index 0 of ``train#handlers`` before it starts ``torchrun``, and ``--tracking mlflow`` appends handlers
(``ConfigWorkflow.patch_bundle_tracking``), so a slice such as ``handlers[:2]`` keeps other handlers than the ones it
was written for. On ranks > 0, every handler is kept except those that only write files or logs for the whole run
(checkpoint savers, statistics, log files and TensorBoard writers, experiment trackers, progress bars), which rank 0
runs. Collectives stay on every rank: ``MetricsSaver`` gathers the metric details of all ranks, ``ValidationHandler``
runs the distributed evaluator, a ``CheckpointLoader`` must load the same weights into every replica.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["RANK0_ONLY", "local_device", "rank_handlers"]


def _rank0_only_types() -> tuple[type, ...]:
    import monai.handlers as mh

    from ..handlers.checkpoint import AtomicCheckpointSaver
    from ..handlers.progress import ProgressHandler

    names = (
        "CheckpointSaver",
        "StatsHandler",
        "LogfileHandler",
        "TensorBoardHandler",
        "MLFlowHandler",
        "ClearMLHandler",
    )
    found: list[type] = [AtomicCheckpointSaver, ProgressHandler]
    found += [getattr(mh, n) for n in names if isinstance(getattr(mh, n, None), type)]
    return tuple(found)


#: names of the handler kinds that run on rank 0 only (subclasses included)
RANK0_ONLY = (
    "CheckpointSaver",
    "StatsHandler",
    "LogfileHandler",
    "TensorBoardHandler (TensorBoardStatsHandler, TensorBoardImageHandler)",
    "MLFlowHandler",
    "ClearMLHandler",
    "attnseg_monai.handlers.ProgressHandler",
)


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return int(os.environ.get("RANK", "0"))


def rank_handlers(handlers: Sequence[Any] | None, rank: int | None = None) -> list[Any]:
    """The handlers this rank runs: all of them on rank 0; on other ranks all but the rank-0-only kinds.

    Args:
        handlers: the configured handler objects (``@train#handlers``, ``@validate#handlers``); ``None`` gives ``[]``.
        rank: the global rank (default: from ``torch.distributed``, else the ``RANK`` variable, else 0).
    """
    items = list(handlers or [])
    if (_rank() if rank is None else int(rank)) == 0:
        return items
    skip = _rank0_only_types()
    return [h for h in items if not isinstance(h, skip)]


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available (the GPU of this process on its node), else the CPU.

    The global rank would name a GPU that does not exist on the second node of a multi-node run.

    Raises:
        RuntimeError: ``LOCAL_RANK`` is not a GPU index of this node.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    text = os.environ.get("LOCAL_RANK", "0")
    count = torch.cuda.device_count()
    if not text.isdigit() or int(text) >= count:
        raise RuntimeError(
            f"LOCAL_RANK={text!r} names no GPU of this node ({count} visible): start torchrun with "
            "--nproc_per_node at most the number of GPUs in CUDA_VISIBLE_DEVICES."
        )
    return torch.device(f"cuda:{int(text)}")
