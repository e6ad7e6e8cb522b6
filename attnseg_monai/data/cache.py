"""Where data-set readers cache what they derive from a data set (rasterised or merged masks)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..io.atomic import sha256_bytes

__all__ = ["resolve_cache_dir"]

logger = logging.getLogger(__name__)


def _writable(folder: Path) -> bool:
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK)


def resolve_cache_dir(root: str | os.PathLike, cache_dir: str | os.PathLike | None, namespace: str) -> Path:
    """Folder where derived files (rasterised or merged masks) of the data set at ``root`` are cached.

    ``cache_dir`` when given; otherwise ``<root>/.attnseg_cache``, or, when ``root`` is read-only, a folder under
    ``$XDG_CACHE_HOME`` (default ``~/.cache``) named after a hash of ``root``. ``namespace`` (the reader name) is
    appended so readers never share files.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().absolute() / namespace
    root_path = Path(root).expanduser().absolute()
    local = root_path / ".attnseg_cache"
    if _writable(local):
        return local / namespace
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnseg_monai"
    fallback = base / sha256_bytes(str(root_path).encode("utf-8"))[:16] / namespace
    logger.warning("%s is not writable; caching derived masks in %s instead.", root_path, fallback)
    return fallback
