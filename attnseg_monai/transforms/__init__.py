"""MONAI transforms of attnseg-monai (array versions and dictionary versions ending in ``d``).

Nuclei instance segmentation (seed 000): :class:`InstanceToBoundaryClasses` builds background / interior / boundary
targets from instance maps, :class:`WatershedInstances` turns the three predicted probabilities back into instances,
:class:`BinaryFromInstances` gives the foreground mask.

Geometry: :class:`SourceGeometryNibabelWriter` writes NIfTI predictions with the input file's exact qform/sform
and codes.
"""

from __future__ import annotations

from .geometry import NIFTI_GEOMETRY_KEYS, SourceGeometryNibabelWriter, source_nifti_header
from .instance import (
    BinaryFromInstances,
    BinaryFromInstancesd,
    InstanceToBoundaryClasses,
    InstanceToBoundaryClassesd,
    WatershedInstances,
    WatershedInstancesd,
)

__all__ = [
    "NIFTI_GEOMETRY_KEYS",
    "SourceGeometryNibabelWriter",
    "source_nifti_header",
    "BinaryFromInstances",
    "BinaryFromInstancesd",
    "InstanceToBoundaryClasses",
    "InstanceToBoundaryClassesd",
    "WatershedInstances",
    "WatershedInstancesd",
]
