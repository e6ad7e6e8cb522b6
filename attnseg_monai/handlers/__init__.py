"""Ignite handlers of the bundles' workflows: atomic checkpoints, exact resumption, NaN stops, progress, tables.

- :class:`AtomicCheckpointSaver` (MONAI's ``CheckpointSaver``, atomic, refuses non-finite weights) and
  :func:`resume_checkpoint` / :func:`find_resume_checkpoint` (``--resume``): :mod:`.checkpoint`;
- :class:`ResumableTraining` (saves and restores the whole run state, stops on a NaN loss): :mod:`.training`;
- :class:`ProgressHandler` (tqdm bar), :class:`SynapseTableHandler` (DANIE's Synapse tables),
  :func:`one_class_output` and :func:`region_output` (per-class and per-region metric handlers).

See docs/reliability.md for the faults injected and the inputs tried.
"""

from __future__ import annotations

from .checkpoint import (
    STATE_KEY,
    AtomicCheckpointSaver,
    NonFiniteLossError,
    find_resume_checkpoint,
    nonfinite_parameters,
    resume_checkpoint,
)
from .output_transforms import one_class_output, region_output
from .progress import ProgressHandler
from .synapse_table import SynapseTableHandler
from .training import ResumableTraining, capture_rng_state, restore_rng_state, transform_generators

__all__ = [
    "STATE_KEY",
    "AtomicCheckpointSaver",
    "NonFiniteLossError",
    "ProgressHandler",
    "ResumableTraining",
    "SynapseTableHandler",
    "capture_rng_state",
    "find_resume_checkpoint",
    "nonfinite_parameters",
    "one_class_output",
    "region_output",
    "restore_rng_state",
    "resume_checkpoint",
    "transform_generators",
]
