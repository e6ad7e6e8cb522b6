"""Tiny settings that let every bundle run its real workflows in seconds inside the test suite: one module per bundle.

Each module defines ``CASE``, a dict with:

- ``net``: config overrides for the network (applied to every config of the bundle);
- ``train``: overrides for train.json and multi_gpu_train.json; ``infer``: for inference.json and evaluate.json;
- ``outputs``: postfixes of the files inference writes per input (``<stem>_<postfix>.<ext>``);
- ``output_ext``: extension of those files (".png" for 2D bundles, ".nii.gz" for 3D ones);
- ``inputs``: odd-sized inputs written for the geometry check: (height, width, channels, extension) for 2D;
- ``max_label``: per output postfix, the largest label value allowed.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

__all__ = ["BUNDLE_CASES"]


def _load() -> dict[str, dict[str, Any]]:
    cases = {}
    for info in pkgutil.iter_modules(__path__):
        cases[info.name] = importlib.import_module(f"{__name__}.{info.name}").CASE
    return cases


BUNDLE_CASES: dict[str, dict[str, Any]] = _load()
