"""Helpers the bundle configs call: locating a bundle, the record that travels with its weights, strict loading,
preparing its datalist, the device and handlers of each rank under torchrun."""

from __future__ import annotations

from .context import BundleRootError
from .data import TASKS, TaskData, inference_items, prepare_datalist
from .distributed import local_device, rank_handlers
from .paths import BUNDLES_DIR, bundle_path, find_bundle_root, list_bundles
from .record import (
    BundleRecord,
    CheckpointRecord,
    RecordError,
    RecordSpec,
    StrictCheckpointLoader,
    WeightsMismatchError,
    build_network,
    load_weights,
    read_record,
    record_path,
    starting_record,
    training_augmentation,
)

__all__ = [
    "BUNDLES_DIR",
    "TASKS",
    "BundleRecord",
    "BundleRootError",
    "CheckpointRecord",
    "RecordError",
    "RecordSpec",
    "StrictCheckpointLoader",
    "TaskData",
    "WeightsMismatchError",
    "build_network",
    "bundle_path",
    "find_bundle_root",
    "inference_items",
    "list_bundles",
    "local_device",
    "load_weights",
    "prepare_datalist",
    "rank_handlers",
    "read_record",
    "record_path",
    "starting_record",
    "training_augmentation",
]
