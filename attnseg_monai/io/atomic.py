"""Atomic file writing, the one implementation: a temporary file in the target folder, flushed and fsynced, then
renamed into place; file permissions; checksums.

A process killed at any moment leaves either the previous complete file or the new complete file at the final path,
never a partial one; at worst a hidden temporary file remains:

- :func:`atomic_open` / :func:`atomic_write_bytes` / :func:`atomic_write_json` / :func:`atomic_torch_save` write
  ``.<name>.<pid>-<random>.tmp``, which :func:`remove_stale_temporaries` deletes (only when its process is gone) and
  which no checkpoint search picks up (hidden, no ``.pt`` ending);
- the batch app writes several outputs of a case before committing them together: :func:`temporary_path` makes
  ``.<name>.r<rank>-<random>.attnseg-tmp<ending>`` (the writer picks the format from the ending) and
  :func:`cleanup_temporary` removes one rank's (or every rank's) leftovers.

Every file gets the permissions an ordinary ``open()`` gives (:func:`file_mode`), not ``mkstemp``'s owner-only ones.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from .suffixes import output_ending

__all__ = [
    "TEMP_MARKER",
    "TMP_SUFFIX",
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "cleanup_temporary",
    "encode_json",
    "file_mode",
    "fsync_dir",
    "remove_stale_temporaries",
    "sha256_bytes",
    "sha256_file",
    "temporary_path",
]

#: Ending of the temporary files written by :func:`atomic_open`.
TMP_SUFFIX = ".tmp"
#: Part of every temporary output name of the batch app; :func:`cleanup_temporary` removes files carrying it.
TEMP_MARKER = ".attnseg-tmp"


def file_mode() -> int:
    """The permissions an ordinary ``open()`` gives a new file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        os.chmod(tmp, file_mode())
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`); parent folders are created. Returns the path.

    Raises:
        OSError: if the folder cannot be created or written; the temporary file is removed.
    """
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def encode_json(obj: Any) -> bytes:
    """``obj`` as indented JSON (keys in insertion order, UTF-8, trailing newline): what :func:`atomic_write_json`
    writes, for callers that need the bytes first (checksums, sample manifests)."""
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (:func:`encode_json`) to ``path`` atomically."""
    return atomic_write_bytes(path, encode_json(obj))


def temporary_path(final: str | os.PathLike, rank: int = 0) -> Path:
    """A new, empty, hidden file next to ``final`` whose name ends with ``final``'s ending (writers pick the format
    from it) and carries :data:`TEMP_MARKER` and the rank (so a process only ever cleans up its own)."""
    target = Path(final)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.r{rank}-", suffix=f"{TEMP_MARKER}{output_ending(target.name)}", dir=target.parent
    )
    os.close(fd)
    os.chmod(name, file_mode())
    return Path(name)


def cleanup_temporary(output_dir: str | os.PathLike, rank: int | None = None) -> list[Path]:
    """Remove :func:`temporary_path` files left by interrupted runs (rank ``rank``'s, or every rank's when ``None``)."""
    root = Path(output_dir)
    pattern = f".*.r{rank}-*{TEMP_MARKER}*" if rank is not None else f".*{TEMP_MARKER}*"
    removed = []
    for name in glob.glob(os.path.join(glob.escape(str(root)), pattern)):
        with contextlib.suppress(OSError):
            os.unlink(name)
            removed.append(Path(name))
    return removed


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
