"""Pick the reader for a data set folder and read it: ``read_dataset(root, layout="auto")``.

Auto-detection tries the registered readers from the most specific layout to the most generic one
(``transunet``, ``msd``, ``btcv``, ``drishti_gs``, ``monuseg``, ``montgomery``, ``shenzhen``, then the generic
``folders``);
readers marked ``auto_detect = False`` (``mitosis``) are used only when named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# importing the reader modules registers them
from . import chest_xray as _chest_xray  # noqa: F401
from . import drishti as _drishti  # noqa: F401
from . import folders as _folders  # noqa: F401
from . import monuseg as _monuseg  # noqa: F401
from .base import DatasetReader, get_reader_class, list_readers

__all__ = ["find_reader", "read_dataset"]


def find_reader(root: str | os.PathLike, **reader_kwargs: Any) -> DatasetReader:
    """The reader (an instance, built with ``reader_kwargs``) of the first layout that recognises ``root``.

    Raises:
        ValueError: if ``root`` is not a folder or no layout matches; the message lists the layouts.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"dataset root {str(path)!r} is not a folder: pass the folder that holds the data set.")
    for name in list_readers():
        cls = get_reader_class(name)
        if cls.auto_detect and cls.detect(path):
            return cls(**reader_kwargs)
    described = "\n".join(f"  - {n}: {get_reader_class(n).description}" for n in list_readers())
    raise ValueError(f"no known data set layout found in {str(path)!r}; accepted layouts:\n{described}")


def read_dataset(root: str | os.PathLike, layout: str = "auto", **reader_kwargs: Any) -> list[dict[str, str]]:
    """Read the data set at ``root`` into datalist items ``{"image": path, "label": path}`` (absolute paths).

    Args:
        root: the data set folder.
        layout: ``"auto"`` or a registered layout name (``list_readers()``: ``monuseg``, ``montgomery``,
            ``shenzhen``, ``drishti_gs``, ``folders``, ``mitosis``).
        reader_kwargs: passed to the reader (``cache_dir``, ``on_missing``, and layout-specific ones such as
            ``image_dir``/``label_dir`` for ``folders``).

    Raises:
        ValueError: for an unknown layout or a folder that matches none.
        DatasetError: listing every file that could not be paired or converted.
    """
    reader = find_reader(root, **reader_kwargs) if layout == "auto" else get_reader_class(layout)(**reader_kwargs)
    return reader.read(root)
