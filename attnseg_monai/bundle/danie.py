"""What the ``danie`` bundle's configs call besides MONAI and the concept folders: its network widths by name and
the number of training slices each datalist item gives.

The Synapse data, loading, sampling and scores live with their kind: :mod:`attnseg_monai.data.synapse`,
:mod:`attnseg_monai.transforms.synapse`, :mod:`attnseg_monai.metrics.synapse`,
:class:`attnseg_monai.handlers.SynapseTableHandler`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..networks.nets.danie import DANIE_PRESETS

__all__ = ["NETWORK_PRESETS", "danie_preset", "slices_per_item"]

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
