"""Where a bundle lives.

MONAI resolves ``"bundle_root": "."`` against the current directory, so a bundle started from the repository root
(``python -m monai.bundle run training --config_file bundles/hannet/configs/train.json``) would write its models
and read its data in the wrong place. The configs instead call :func:`find_bundle_root`, which takes the folder of
the config file being run from MONAI's own workflow (:mod:`attnseg_monai.bundle.context`): a bundle copied anywhere
and started from any directory resolves to itself, never to another copy. MONAI Label and ``--bundle_root``
overrides replace the expression. Where the config file cannot be known (a bare ``ConfigParser``), it fails and
says to set ``bundle_root``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .context import BundleRootError, config_root_on_stack

__all__ = ["BUNDLES_DIR", "bundle_path", "find_bundle_root", "list_bundles"]


def _bundles_dir() -> Path:
    """The collection's bundles: ``attnseg_monai/bundles`` of an installed wheel (the repository's ``bundles/``
    packaged as data, see pyproject.toml), else the ``bundles/`` folder beside the package in a source checkout (an
    editable install). One place per installation, never a search."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "bundles"
    return installed if installed.is_dir() else package.parent / "bundles"


#: The folder of the collection's bundles (see :func:`_bundles_dir`).
BUNDLES_DIR = _bundles_dir()


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


def find_bundle_root(name: str) -> str:
    """Absolute path of the bundle folder whose config is being run (config helper for ``bundle_root``).

    The folder is the parent of the ``configs/`` folder holding the first ``--config_file`` (MONAI's
    ``ConfigWorkflow.config_root_path``); it must hold ``configs/metadata.json``.

    Args:
        name: the bundle's name, for the messages.

    Raises:
        BundleRootError: if the config file being run is unknown (a bare ``ConfigParser``), or its folder is not a
            bundle's ``configs/`` folder; the message says to pass ``--bundle_root``.
    """
    configs = config_root_on_stack()
    if configs is None:
        raise BundleRootError(
            f"cannot tell which folder the {name!r} bundle config belongs to (it is not being run through MONAI's "
            f"ConfigWorkflow or a monai.bundle script); pass --bundle_root /path/to/{name} (parser['bundle_root'])."
        )
    root = configs.parent if configs.name == "configs" else configs
    if not (root / "configs" / "metadata.json").is_file():
        raise BundleRootError(
            f"{configs} is not the configs/ folder of a bundle ({root / 'configs' / 'metadata.json'} is missing): "
            f"put the bundle's own config first in --config_file, or pass --bundle_root /path/to/{name}."
        )
    return str(root.resolve())


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
    """Names of the bundles of this collection (:data:`BUNDLES_DIR`), sorted."""
    if not BUNDLES_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if _bundle_name(p) == p.name)
