"""Reliability for long runs and untrusted inputs: atomic checkpoints, exact resumption, NaN/inf stops, safe paths.

See docs/reliability.md for the faults injected and the inputs tried.
"""

from __future__ import annotations

from .atomic import atomic_open, atomic_torch_save, fsync_dir, remove_stale_temporaries
from .checkpoint import (
    AtomicCheckpointSaver,
    CheckpointReadError,
    UnsafeCheckpointError,
    find_resume_checkpoint,
    load_checkpoint_file,
    nonfinite_parameters,
    resume_checkpoint,
)
from .paths import UnsafePathError, safe_extract, safe_join
from .training import NonFiniteLossError, ResumableTraining, capture_rng_state, restore_rng_state, transform_generators

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointReadError",
    "NonFiniteLossError",
    "ResumableTraining",
    "UnsafeCheckpointError",
    "UnsafePathError",
    "atomic_open",
    "atomic_torch_save",
    "capture_rng_state",
    "find_resume_checkpoint",
    "fsync_dir",
    "load_checkpoint_file",
    "nonfinite_parameters",
    "remove_stale_temporaries",
    "restore_rng_state",
    "resume_checkpoint",
    "safe_extract",
    "safe_join",
    "transform_generators",
]
