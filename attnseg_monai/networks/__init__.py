"""Networks of attnseg_monai: blocks, nets, the name registry and the describe tool."""

from __future__ import annotations

from . import nets  # noqa: F401  (registers the networks)
from .registry import get_network, list_networks, network_config, register_network
from .utils import NetworkDescription, count_parameters, describe_network

__all__ = [
    "NetworkDescription",
    "count_parameters",
    "describe_network",
    "get_network",
    "list_networks",
    "network_config",
    "register_network",
]
