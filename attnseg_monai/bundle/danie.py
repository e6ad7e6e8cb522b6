"""What the ``danie`` bundle's configs call besides MONAI and the concept folders: its network widths by name, the
number of training slices each datalist item gives, and the epochs that make an iteration budget.

The Synapse data, loading, sampling and scores live with their kind: :mod:`attnseg_monai.data.synapse`,
:mod:`attnseg_monai.transforms.synapse`, :mod:`attnseg_monai.metrics.synapse`,
:class:`attnseg_monai.handlers.SynapseTableHandler`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..networks.nets.danie import DANIE_PRESETS

__all__ = ["NETWORK_PRESETS", "danie_preset", "epochs_for_iterations", "slices_per_item"]

#: the network presets a danie config names with ``network_preset``: DANIE-S / -B / -L of the network
#: (:data:`attnseg_monai.networks.nets.danie.DANIE_PRESETS`; the paper reports DANIE-L) as JSON-friendly lists, plus
#: the bundle's ``"tiny"`` width for the 2-core CPU quick recipe (not a configuration of the paper: a quarter of the
#: small widths' compute, one block per stage)
NETWORK_PRESETS: dict[str, dict[str, list[int]]] = {
    "tiny": {"embed_dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 4]},
    **{name: {key: list(value) for key, value in preset.items()} for name, preset in DANIE_PRESETS.items()},
}


def danie_preset(name: str) -> dict[str, list[int]]:
    """``embed_dims``, ``depths``, ``num_heads`` of a preset: ``"tiny"``, ``"small"``, ``"base"``, ``"large"``.

    Use as ``"preset": "$attnseg_monai.bundle.danie.danie_preset(@network_preset)"``; the network's arguments then
    read ``"$@preset['embed_dims']"`` and so on.

    Raises:
        ValueError: for an unknown preset name.
    """
    if name not in NETWORK_PRESETS:
        raise ValueError(f"unknown DANIE preset {name!r}; presets: {', '.join(NETWORK_PRESETS)} (the paper: large).")
    return {key: list(value) for key, value in NETWORK_PRESETS[name].items()}


def slices_per_item(items: Sequence[Mapping[str, Any]], slices_per_volume: int) -> int:
    """How many training slices :class:`~attnseg_monai.transforms.RandAxialSlicesd` draws from each item.

    TransUNet's ``.npz`` files are single slices (one sample each); volumes give ``slices_per_volume``. The kind of
    the first item decides (a Synapse datalist holds one kind: :func:`~attnseg_monai.data.prepare_synapse_datalist`).

    Use as ``"slices_per_item": "$attnseg_monai.bundle.danie.slices_per_item(@train#datalist, @slices_per_volume)"``.

    Raises:
        ValueError: for an empty datalist or ``slices_per_volume < 1``.
    """
    if isinstance(slices_per_volume, bool) or not isinstance(slices_per_volume, int) or slices_per_volume < 1:
        raise ValueError(f"slices_per_volume must be an int >= 1, got {slices_per_volume!r}.")
    if not items:
        raise ValueError("the training datalist is empty: there is nothing to draw slices from.")
    return 1 if str(items[0]["image"]).lower().endswith(".npz") else int(slices_per_volume)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    return value


def epochs_for_iterations(iterations: int, num_items: int, slices_per_item: int, batch_size: int) -> int:
    """The epochs that give at least ``iterations`` training iterations (optimiser steps) of one process.

    The training loader of the danie bundle batches ``max(1, batch_size // slices_per_item)`` datalist items (each
    gives ``slices_per_item`` slices: 1 for TransUNet's ``.npz`` slices, ``slices_per_volume`` for volumes) and does
    not drop the last, smaller batch, so an epoch is ``ceil(num_items / items_per_batch)`` iterations. The paper
    recipe uses it to train as many iterations as the TransUNet protocol (about 14k at batch 24) whatever the number
    of training volumes or slices:

    * TransUNet's 2211 ``.npz`` slices, batch 24: 93 iterations per epoch, 151 epochs for 14000 iterations;
    * 18 raw BTCV volumes, 8 slices each, batch 24 (3 volumes): 6 iterations per epoch, 2334 epochs.

    Under ``torchrun`` every process's ``DistributedSampler`` holds ``1 / world_size`` of the items, so with the same
    epochs each process runs about ``iterations / world_size`` iterations of its own batch: the same number of slices.

    Use as ``"max_epochs": "$attnseg_monai.bundle.danie.epochs_for_iterations(@paper_iterations,
    len(@train#datalist), @train#slices_per_item, @batch_size)"``.

    Raises:
        ValueError: if an argument is not a positive integer.
    """
    iterations = _positive_int("iterations", iterations)
    num_items = _positive_int("num_items (the training datalist's length)", num_items)
    slices_per_item = _positive_int("slices_per_item", slices_per_item)
    batch_size = _positive_int("batch_size", batch_size)
    per_epoch = math.ceil(num_items / max(1, batch_size // slices_per_item))
    return math.ceil(iterations / per_epoch)
