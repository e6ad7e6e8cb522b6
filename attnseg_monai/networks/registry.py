"""Find networks by name: a dictionary filled by a decorator, in the manner of timm's model registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["register_network", "get_network", "list_networks"]

_F = TypeVar("_F", bound=Callable[..., nn.Module])
_NETWORKS: dict[str, Callable[..., nn.Module]] = {}


def register_network(name: str | None = None) -> Callable[[_F], _F]:
    """Register a network class or preset function under ``name`` (default: the object's name, lower case).

    Raises:
        ValueError: if the name is already taken by another object.
    """

    def _register(obj: _F) -> _F:
        key = (name or obj.__name__).lower()
        if key in _NETWORKS and _NETWORKS[key] is not obj:
            raise ValueError(f"network name {key!r} is already registered to {_NETWORKS[key]!r}.")
        _NETWORKS[key] = obj
        return obj

    return _register


def get_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` (case-insensitive) with ``kwargs``.

    Raises:
        KeyError: if ``name`` is unknown; the message lists the known names.
    """
    key = name.lower()
    if key not in _NETWORKS:
        raise KeyError(f"unknown network {name!r}; known networks: {', '.join(list_networks())}.")
    return _NETWORKS[key](**kwargs)


def list_networks() -> list[str]:
    """Names of all registered networks and presets, sorted."""
    return sorted(_NETWORKS)
