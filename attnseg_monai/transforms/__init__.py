"""MONAI transforms of attnseg-monai (array versions and dictionary versions ending in ``d``).

Nuclei instance segmentation (seed 000): :class:`InstanceToBoundaryClasses` builds background / interior / boundary
targets from instance maps, :class:`WatershedInstances` turns the three predicted probabilities back into instances,
:class:`BinaryFromInstances` gives the foreground mask.
"""

from __future__ import annotations

from .instance import (
    BinaryFromInstances,
    BinaryFromInstancesd,
    InstanceToBoundaryClasses,
    InstanceToBoundaryClassesd,
    WatershedInstances,
    WatershedInstancesd,
)

__all__ = [
    "BinaryFromInstances",
    "BinaryFromInstancesd",
    "InstanceToBoundaryClasses",
    "InstanceToBoundaryClassesd",
    "WatershedInstances",
    "WatershedInstancesd",
]
