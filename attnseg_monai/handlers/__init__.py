"""Ignite handlers used by the bundles' training and evaluation workflows."""

from __future__ import annotations

from .synapse_table import SynapseTableHandler

__all__ = ["SynapseTableHandler"]
