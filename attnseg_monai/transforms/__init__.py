"""MONAI transforms of attnseg-monai (array versions and dictionary versions ending in ``d``).

Nuclei instance segmentation (seed 000): :class:`InstanceToBoundaryClasses` builds background / interior / boundary
targets from instance maps, :class:`WatershedInstances` turns the three predicted probabilities back into instances,
:class:`BinaryFromInstances` gives the foreground mask.

Synapse CT (seed 003): :class:`LoadSynapsed` loads raw BTCV, DICOM and TransUNet files with the HU window
:data:`HU_WINDOW`; :class:`RandAxialSlicesd` draws (class-balanced) axial slices of volumes for 2D training.

Post-processing (seed 002): :class:`CRFd` / :class:`CRFRefine` refine class probabilities with a dense CRF guided by
the image (MONAI's ``CRF`` when its compiled extension is present, else :func:`mean_field_crf` in PyTorch).
"""

from __future__ import annotations

from .crf import CRFd, CRFRefine, mean_field_crf, monai_crf_available
from .instance import (
    BinaryFromInstances,
    BinaryFromInstancesd,
    InstanceToBoundaryClasses,
    InstanceToBoundaryClassesd,
    WatershedInstances,
    WatershedInstancesd,
)
from .synapse import HU_WINDOW, LoadSynapsed, RandAxialSlicesd, load_synapse

__all__ = [
    "CRFRefine",
    "CRFd",
    "mean_field_crf",
    "monai_crf_available",
    "BinaryFromInstances",
    "BinaryFromInstancesd",
    "InstanceToBoundaryClasses",
    "InstanceToBoundaryClassesd",
    "WatershedInstances",
    "WatershedInstancesd",
    "HU_WINDOW",
    "LoadSynapsed",
    "RandAxialSlicesd",
    "load_synapse",
]
