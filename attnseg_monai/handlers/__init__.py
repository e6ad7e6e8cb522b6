"""Ignite handlers used by the bundles' training and evaluation workflows."""

from __future__ import annotations

from .output_transforms import one_class_output
from .synapse_table import SynapseTableHandler

__all__ = ["SynapseTableHandler", "one_class_output"]
