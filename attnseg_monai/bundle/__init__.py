"""Helpers the bundle configs call: locating a bundle, preparing its datalist, progress display."""

from __future__ import annotations

from .data import TASKS, TaskData, inference_items, prepare_datalist
from .handlers import ProgressHandler
from .paths import BUNDLES_DIR, bundle_path, find_bundle_root, list_bundles

__all__ = [
    "BUNDLES_DIR",
    "TASKS",
    "ProgressHandler",
    "TaskData",
    "bundle_path",
    "find_bundle_root",
    "inference_items",
    "list_bundles",
    "prepare_datalist",
]
