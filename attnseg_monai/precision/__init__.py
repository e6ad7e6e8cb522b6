"""Device capability, precision policy, network preparation for inference and autocast for training iterations.

:func:`resolve_policy` chooses the dtype and memory layout a network runs in on a device (from its
:class:`DeviceCapabilities`); :func:`prepare_for_inference` makes the network ready for it (batch norm folded,
weights cast, channels-last) as a :class:`FastNetwork`; :class:`AutocastIteration` runs a ``SupervisedTrainer``'s
iteration under bf16 autocast. The inferers that use them are in :mod:`attnseg_monai.inferers` (``fast.py``); see
``docs/benchmarks.md`` for what they gain on each device and what they cost in accuracy.
"""

from __future__ import annotations

from .capability import DeviceCapabilities, cpu_flags, detect_capabilities
from .policy import PRECISIONS, PrecisionPolicy, resolve_policy
from .prepare import FastNetwork, fold_batch_norm, instance_norm_to_group_norm, prepare_for_inference
from .training import AutocastIteration

__all__ = [
    "PRECISIONS",
    "AutocastIteration",
    "DeviceCapabilities",
    "FastNetwork",
    "PrecisionPolicy",
    "cpu_flags",
    "detect_capabilities",
    "fold_batch_norm",
    "instance_norm_to_group_norm",
    "prepare_for_inference",
    "resolve_policy",
]
