"""Per-network settings for the contract in ``tests/networks/test_contract.py``: one module per network.

Each module defines ``CASES: list[NetCase]``; every name in ``attnseg_monai.list_networks()`` must be covered.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NetCase", "all_cases"]


@dataclass
class NetCase:
    """How the contract builds a registered network small enough for fast tests.

    Attributes:
        name: registry name.
        variant: short label of a configuration when a network has several cases (test ids ``name[variant]``).
        kwargs: keyword arguments besides ``spatial_dims``, ``in_channels`` and ``out_channels``.
        kwargs_3d: extra keyword arguments for ``spatial_dims=3`` (merged over ``kwargs``).
        dims: spatial dimensionalities to test.
        deep_supervision: keyword arguments that switch deep supervision on (``None``: the network has none).
        deep_supervision_outputs: how many tensors training mode then returns (final output first).
        invalid_kwargs: argument sets the network must reject with ``ValueError`` (merged over ``kwargs``).
        atol: tolerance for the export round trips.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    kwargs_3d: dict[str, Any] = field(default_factory=dict)
    dims: tuple[int, ...] = (2, 3)
    deep_supervision: dict[str, Any] | None = None
    deep_supervision_outputs: int = 0
    invalid_kwargs: list[dict[str, Any]] = field(default_factory=list)
    atol: float = 1e-4

    def build_kwargs(self, spatial_dims: int, in_channels: int = 1, out_channels: int = 2, **extra: Any) -> dict:
        kw = {**self.kwargs, **(self.kwargs_3d if spatial_dims == 3 else {}), **extra}
        return {"spatial_dims": spatial_dims, "in_channels": in_channels, "out_channels": out_channels, **kw}

    def __str__(self) -> str:
        return f"{self.name}[{self.variant}]" if self.variant else self.name


def all_cases() -> list[NetCase]:
    cases: list[NetCase] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        cases.extend(module.CASES)
    return cases
