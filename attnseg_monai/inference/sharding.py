"""Sharding a batch over processes: under ``torchrun``, on a cluster, or by hand with ``RANK``/``WORLD_SIZE``.

Process ``rank`` of ``world_size`` takes the cases ``sorted_cases[rank::world_size]``: the shards are disjoint and
together hold every case, so a job finishes the folder once. The rank and world size come from, in order: the
arguments, an initialised ``torch.distributed`` process group, the ``RANK``/``WORLD_SIZE`` environment variables
(set by ``torchrun``; set them yourself for array jobs), and otherwise ``(0, 1)``.

Under ``torchrun`` (``MASTER_ADDR`` and ``MASTER_PORT`` set) :func:`maybe_init_process_group` starts a ``gloo``
group, used only for one barrier at the end, so that rank 0 merges a complete manifest. Without a group the
processes never wait for each other (see :mod:`~attnseg_monai.inference.manifest` for how the manifest is merged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TypeVar

import torch.distributed as dist

__all__ = ["barrier", "maybe_init_process_group", "resolve_rank", "shard"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} must be an integer.") from exc


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` from the arguments, the process group or the environment (see the module docstring).

    Raises:
        ValueError: unless ``0 <= rank < world_size``, or when only one of the two is given.
    """
    if (rank is None) != (world_size is None):
        raise ValueError("give both rank and world_size, or neither (then RANK/WORLD_SIZE or torch.distributed).")
    if rank is None:
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
            if rank is None or world_size is None:
                rank, world_size = 0, 1
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"rank must satisfy 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    return rank, world_size


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items of process ``rank``: ``items[rank::world_size]`` (``items`` must already be sorted)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must satisfy 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    return list(items[rank::world_size])


def maybe_init_process_group() -> bool:
    """Start a ``gloo`` process group when launched by ``torchrun`` and none exists; returns whether one was started.

    Only ``WORLD_SIZE > 1`` with ``MASTER_ADDR``/``MASTER_PORT`` in the environment starts one; ``gloo`` is used even on
    GPUs since the group only carries one barrier. A failure to connect is logged and the run goes on without a group.
    """
    if not dist.is_available() or dist.is_initialized():
        return False
    world = _env_int("WORLD_SIZE") or 1
    if world <= 1 or not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        return False
    try:
        dist.init_process_group(backend="gloo")
    except Exception as exc:  # noqa: BLE001 - the run still works without a group
        logger.warning("could not start a gloo process group (%s); the ranks will not wait for each other.", exc)
        return False
    return True


def barrier() -> None:
    """Wait for every process of the group (no-op without an initialised group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
