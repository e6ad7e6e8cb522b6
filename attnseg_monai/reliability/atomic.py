"""Atomic file writing: a temporary file in the target folder, flushed and fsynced, then renamed into place.

A process killed at any moment leaves either the previous complete file or the new complete file at the final path,
never a partial one; at worst a hidden temporary file (``.<name>.<pid>-<random>.tmp``) remains, which
:func:`remove_stale_temporaries` deletes and which no checkpoint search picks up (it is hidden and has no ``.pt``
ending).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["TMP_SUFFIX", "atomic_open", "atomic_torch_save", "fsync_dir", "remove_stale_temporaries"]

#: Ending of the temporary files written by :func:`atomic_open`.
TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_name(final: Path) -> Path:
    """The hidden temporary path :func:`atomic_open` writes before renaming to ``final``."""
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it is fsynced and renamed to ``path``.

    If the body raises, the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the final file.
        mode: ``"wb"`` or ``"w"``.

    Raises:
        ValueError: for a mode other than ``"wb"``/``"w"``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}.")
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    fh = open(tmp, mode)  # noqa: SIM115 - closed below on every path
    try:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        fh.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike, save: Callable[..., Any] = torch.save) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_open`; returns the final path."""
    with atomic_open(path, "wb") as fh:
        save(obj, fh)
    return Path(path)


def _writer_alive(name: str) -> bool:
    """Whether the process that named this temporary file (``.<name>.<pid>-<hex>.tmp``) still runs on this host."""
    try:
        pid = int(name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1].split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files left in ``folder`` by killed writers (not those of live processes); returns them."""
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for p in root.iterdir():
        if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file() and not _writer_alive(p.name):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
