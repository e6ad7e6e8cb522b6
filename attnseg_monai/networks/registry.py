"""Find networks by name: a dictionary filled by a decorator, in the manner of timm's model registry.

A registered network *class* also remembers how it was built: :func:`network_config` returns its importable
``_target_`` and the constructor's arguments (defaults filled in) as plain JSON data, the network part of the record
that travels with a bundle's weights (:mod:`attnseg_monai.bundle.record`). A class whose constructor passes
``**kwargs`` on to another class may define ``recorded_arguments(self, arguments) -> dict`` to complete them (e.g. with
the defaults of the class it wraps, :class:`attnseg_monai.networks.nets.MonaiNetwork`); the record holds its result.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["register_network", "get_network", "list_networks", "network_config", "registered_classes"]

#: attribute under which a registered network keeps its construction arguments
CONFIG_ATTR = "_attnseg_network_config"

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
        if inspect.isclass(obj) and issubclass(obj, nn.Module):
            _remember_construction(obj)
        _NETWORKS[key] = obj
        return obj

    return _register


def _public_target(cls: type) -> str:
    """``attnseg_monai.networks.nets.HanNet`` where the class is exported there, else its defining module's path."""
    package = cls.__module__.rsplit(".", 1)[0]
    try:
        if getattr(importlib.import_module(package), cls.__name__, None) is cls:
            return f"{package}.{cls.__name__}"
    except ImportError:  # pragma: no cover - the defining package imports while the class is being defined
        pass
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any) -> Any:
    """JSON data of an argument value (tuples become lists); anything else raises ``TypeError``."""
    return json.loads(json.dumps(value))


def _remember_construction(cls: type) -> None:
    """Wrap ``cls.__init__`` so an instance keeps its arguments (only the outermost class of a subclass chain)."""
    if getattr(cls.__init__, "_attnseg_records", False):
        return
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is not cls:
            return
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for pname, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[pname].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                arguments[pname] = value
        complete = getattr(self, "recorded_arguments", None)
        if callable(complete):
            arguments = complete(arguments)
        try:
            config: dict[str, Any] | None = {"_target_": _public_target(cls), **_plain(arguments)}
        except (TypeError, ValueError):
            config = None  # arguments that are not JSON data (a module, a dtype): no record can be written
        object.__setattr__(self, CONFIG_ATTR, config)

    __init__._attnseg_records = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def network_config(network: nn.Module) -> dict[str, Any]:
    """How ``network`` was built: ``{"_target_": "attnseg_monai.networks.nets.HanNet", "spatial_dims": 2, ...}``.

    ``DataParallel``/``DistributedDataParallel`` wrappers are looked through.

    Raises:
        ValueError: if the network is not an instance of a registered class, or was built with arguments that are not
            JSON data; the message names the class.
    """
    while isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        network = network.module
    config = getattr(network, CONFIG_ATTR, None)
    if not config:
        raise ValueError(
            f"{type(network).__name__} does not record its construction arguments: build it from a class registered "
            "with attnseg_monai.networks.register_network, with JSON-serialisable arguments."
        )
    return json.loads(json.dumps(config))


def registered_classes() -> list[type[nn.Module]]:
    """The registered network classes (not the preset functions)."""
    return [obj for obj in dict.fromkeys(_NETWORKS.values()) if inspect.isclass(obj) and issubclass(obj, nn.Module)]


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
