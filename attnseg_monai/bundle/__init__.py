"""Helpers the bundle configs call: locating a bundle, the record that travels with its weights, strict loading,
preparing its datalist, progress display."""

from __future__ import annotations

from .context import BundleRootError
from .data import TASKS, TaskData, inference_items, prepare_datalist
from .handlers import ProgressHandler
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
)

__all__ = [
    "BUNDLES_DIR",
    "TASKS",
    "BundleRecord",
    "BundleRootError",
    "CheckpointRecord",
    "ProgressHandler",
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
    "load_weights",
    "prepare_datalist",
    "read_record",
    "record_path",
    "starting_record",
]
