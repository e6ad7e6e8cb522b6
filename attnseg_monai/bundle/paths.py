"""Where a bundle lives.

MONAI resolves ``"bundle_root": "."`` against the current directory, so a bundle started from the repository root
(``python -m monai.bundle run training --config_file bundles/hannet/configs/train.json``) would write its models
and read its data in the wrong place. The configs instead call :func:`find_bundle_root`, which finds the bundle
folder from the usual places; MONAI Label and ``--bundle_root`` overrides still take precedence, as they replace
the expression.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["BUNDLES_DIR", "bundle_path", "find_bundle_root", "list_bundles"]

#: The ``bundles/`` folder of this checkout (the package is installed from the repository, editable or not).
BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"


def _bundle_name(folder: Path) -> str | None:
    """The bundle name a folder declares: its folder name when it holds ``configs/metadata.json``."""
    meta = folder / "configs" / "metadata.json"
    if not meta.is_file():
        return None
    try:
        json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return folder.name


def find_bundle_root(name: str, cwd: str | os.PathLike | None = None) -> str:
    """Absolute path of the bundle ``name``, looked up in this order.

    1. the current directory, when it is that bundle's folder (``cd bundles/hannet``);
    2. ``./bundles/<name>`` (run from the repository root);
    3. the ``bundles/<name>`` folder of the checkout this package was installed from.

    Raises:
        FileNotFoundError: if none of these holds ``configs/metadata.json``; the message lists where it looked.
    """
    here = Path(cwd or os.getcwd()).resolve()
    candidates = [here, here / "bundles" / name, BUNDLES_DIR / name]
    for folder in candidates:
        if folder.name == name and _bundle_name(folder) == name:
            return str(folder)
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"cannot find bundle {name!r} (looked in {looked}); pass --bundle_root /path/to/bundles/{name}."
    )


def bundle_path(name: str) -> Path:
    """Folder of a bundle of this collection.

    Raises:
        KeyError: if ``name`` is not a bundle of this collection; the message lists the bundles.
    """
    folder = BUNDLES_DIR / name
    if _bundle_name(folder) != name:
        raise KeyError(f"unknown bundle {name!r}; bundles of this collection: {', '.join(list_bundles())}.")
    return folder


def list_bundles() -> list[str]:
    """Names of the bundles shipped in this checkout, sorted."""
    if not BUNDLES_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if _bundle_name(p) == p.name)
