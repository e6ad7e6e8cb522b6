"""The reader interface: one class per on-disk data set layout, found by name or by looking at the folder.

A reader turns a data set folder into a MONAI datalist: a list of ``{"image": path, "label": path}`` dicts with
absolute paths, sorted by image path. Readers never modify the user's files; what they derive (a mask rasterised
from XML polygons, two lung masks merged into one) is written once into a cache folder.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, TypeVar

from .pairing import check_missing_policy

__all__ = ["DatasetReader", "get_reader_class", "list_readers", "register_reader"]

_R = TypeVar("_R", bound=type["DatasetReader"])
_READERS: dict[str, type[DatasetReader]] = {}


class DatasetReader(ABC):
    """Base class of the data set readers.

    Subclasses set ``name`` (the ``layout`` string users pass), ``description``, ``priority`` (higher is tried
    first by :func:`~attnseg_monai.data.discovery.find_reader`; generic layouts are low) and ``auto_detect``
    (False for layouts that cannot be told apart from a more generic one by looking at the folder), and implement
    :meth:`detect` and :meth:`read`.

    Args:
        cache_dir: where derived masks are written; default ``<root>/.attnseg_cache`` (or a user cache folder
            when the data set is read-only). Readers that derive nothing ignore it.
        on_missing: ``"error"`` (default for most layouts) raises a
            :class:`~attnseg_monai.data.errors.DatasetError` listing images without labels and labels without
            images; ``"skip"`` leaves them out with a logged warning. ``None`` takes the layout's default.

    Raises:
        ValueError: if ``on_missing`` is not one of ``"error"``, ``"skip"``, ``None``.

    Example::

        >>> from attnseg_monai.data import get_reader_class
        >>> reader = get_reader_class("monuseg")(cache_dir="/tmp/cache")
        >>> items = reader.read("/data/MoNuSeg 2018 Training Data")   # 2D pathology tiles
        >>> reader = get_reader_class("folders")(on_missing="skip")
        >>> items = reader.read("/data/slices")   # image/mask folders

    3D layouts (``msd``, ``btcv``, ``transunet``) live in :mod:`attnseg_monai.data.ct_layouts`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    priority: ClassVar[int] = 0
    auto_detect: ClassVar[bool] = True
    default_on_missing: ClassVar[str] = "error"

    def __init__(self, *, cache_dir: str | os.PathLike | None = None, on_missing: str | None = None) -> None:
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.on_missing = check_missing_policy(on_missing if on_missing is not None else self.default_on_missing)

    @classmethod
    @abstractmethod
    def detect(cls, root: str | os.PathLike) -> bool:
        """Whether the folder ``root`` looks like this layout (cheap: looks at names only)."""

    @abstractmethod
    def read(self, root: str | os.PathLike) -> list[dict[str, str]]:
        """The datalist items of the data set at ``root``.

        Raises:
            DatasetError: listing every file that cannot be paired or converted.
            ValueError: if ``root`` is not a folder of this layout.
        """

    @staticmethod
    def _root(root: str | os.PathLike) -> Path:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise ValueError(f"dataset root {str(path)!r} is not a folder: pass the folder that holds the data set.")
        return path.absolute()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cache_dir={self.cache_dir!r}, on_missing={self.on_missing!r})"


def register_reader(cls: _R) -> _R:
    """Class decorator: make a :class:`DatasetReader` subclass available under its ``name``.

    Raises:
        ValueError: if the class has no name or the name is taken by another class.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set a non-empty 'name' to be registered.")
    if cls.name in _READERS and _READERS[cls.name] is not cls:
        raise ValueError(f"reader name {cls.name!r} is already registered to {_READERS[cls.name].__name__}.")
    _READERS[cls.name] = cls
    return cls


def get_reader_class(name: str) -> type[DatasetReader]:
    """The reader class registered as ``name``.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the known layouts.
    """
    key = name.lower()
    if key not in _READERS:
        raise ValueError(f"unknown dataset layout {name!r}; known layouts: {', '.join(list_readers())} (or 'auto').")
    return _READERS[key]


def list_readers() -> list[str]:
    """Registered layout names, in the order auto-detection tries them (highest priority first)."""
    return [cls.name for cls in sorted(_READERS.values(), key=lambda c: (-c.priority, c.name))]
