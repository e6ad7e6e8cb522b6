"""The fast inference path: precision and memory layout chosen per device, batch norm folded, sliding windows
fitted to the image. See ``docs/benchmarks.md`` for what it gains on each device and what it costs in accuracy.
"""

from __future__ import annotations

from .capability import DeviceCapabilities, cpu_flags, detect_capabilities
from .inferer import FastPathMixin, FastSlidingWindowInferer, fit_window_grid, with_fast_path
from .policy import PRECISIONS, PrecisionPolicy, resolve_policy
from .prepare import FastNetwork, fold_batch_norm, instance_norm_to_group_norm, prepare_for_inference
from .training import AutocastIteration

__all__ = [
    "PRECISIONS",
    "AutocastIteration",
    "DeviceCapabilities",
    "FastNetwork",
    "FastPathMixin",
    "FastSlidingWindowInferer",
    "PrecisionPolicy",
    "cpu_flags",
    "detect_capabilities",
    "fit_window_grid",
    "fold_batch_norm",
    "instance_norm_to_group_norm",
    "prepare_for_inference",
    "resolve_policy",
    "with_fast_path",
]
