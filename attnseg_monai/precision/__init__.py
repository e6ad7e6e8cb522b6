"""Device capability, precision policy, network preparation and engines for inference, autocast for training.

:func:`resolve_policy` chooses the dtype and memory layout a network runs in on a device (from its
:class:`DeviceCapabilities`); :func:`prepare_for_inference` makes the network ready for it (batch norm folded,
weights cast, channels-last) as a :class:`FastNetwork`; :func:`prepare_engine` does that on the engine
:func:`choose_engine` picks (torch, or OpenVINO on the CPU: :mod:`.openvino_engine`); :class:`AutocastIteration`
runs a ``SupervisedTrainer``'s iteration under bf16 autocast. The inferers that use them are in
:mod:`attnseg_monai.inferers` (``fast.py``); see ``docs/benchmarks.md`` for what they gain on each device and what
they cost in accuracy.
"""

from __future__ import annotations

from .capability import DeviceCapabilities, cpu_flags, detect_capabilities
from .engine import ENGINES, choose_engine, openvino_available, prepare_engine
from .policy import PRECISIONS, PrecisionPolicy, resolve_policy
from .prepare import FastNetwork, fold_batch_norm, instance_norm_to_group_norm, prepare_for_inference
from .training import AutocastIteration

__all__ = [
    "ENGINES",
    "PRECISIONS",
    "AutocastIteration",
    "choose_engine",
    "DeviceCapabilities",
    "FastNetwork",
    "PrecisionPolicy",
    "cpu_flags",
    "detect_capabilities",
    "fold_batch_norm",
    "instance_norm_to_group_norm",
    "openvino_available",
    "prepare_engine",
    "prepare_for_inference",
    "resolve_policy",
]
