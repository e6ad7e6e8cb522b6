"""attnseg_monai: attention-based medical image segmentation networks and bundles for MONAI."""

from __future__ import annotations

from .networks import describe_network, get_network, list_networks, register_network

__version__ = "0.1.0"

__all__ = ["__version__", "describe_network", "get_network", "list_networks", "register_network"]
